package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// dashboardPath is the Grafana dashboard an SRE imports (README).
var dashboardPath = filepath.Join(repoRoot, "deploy", "grafana", "dunning.json")

// dashboard is the part of Grafana's dashboard model the file uses; the
// file is decoded strictly against it, so a misspelt key fails here.
type dashboard struct {
	Title         string   `json:"title"`
	UID           string   `json:"uid"`
	Description   string   `json:"description"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Editable      bool     `json:"editable"`
	Refresh       string   `json:"refresh"`
	Tags          []string `json:"tags"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Label string `json:"label"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panelDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  panelDatasource `json:"datasource"`
	GridPos     struct {
		X int `json:"x"`
		Y int `json:"y"`
		W int `json:"w"`
		H int `json:"h"`
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
		Overrides []any `json:"overrides"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string          `json:"refId"`
		Datasource   panelDatasource `json:"datasource"`
		Expr         string          `json:"expr"`
		LegendFormat string          `json:"legendFormat"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// The dashboard decodes strictly, every panel queries the dashboard's
// Prometheus variable with PromQL that parses, and panels have unique IDs
// and places. TestDeployment checks every metric and label they select
// against what the services export, as it does the alert rules.
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard uid %q, title %q, %d panels", d.UID, d.Title, len(d.Panels))
	}
	if len(d.Templating.List) != 1 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Errorf("templating = %+v, want the one Prometheus datasource variable", d.Templating.List)
	}
	ids, places := map[int]bool{}, map[[2]int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if at := [2]int{p.GridPos.X, p.GridPos.Y}; places[at] {
			t.Errorf("panel %q at %v, over another", p.Title, at)
		} else {
			places[at] = true
		}
		if p.Title == "" || p.Description == "" || p.Type != "timeseries" || len(p.Targets) == 0 {
			t.Errorf("panel %d: title %q, description %q, type %q, %d targets", p.ID, p.Title, p.Description, p.Type, len(p.Targets))
		}
		if ds := p.Datasource; ds.Type != "prometheus" || ds.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the dashboard's variable", p.Title, ds)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != p.Datasource {
				t.Errorf("panel %q: target datasource %+v", p.Title, tg.Datasource)
			}
			if _, err := parsePromQL(tg.Expr); err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
			}
		}
	}
}

// dashboardRules are the dashboard's queries as rules, for checkRuleMetrics.
func dashboardRules(t *testing.T) []rule {
	var out []rule
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			out = append(out, rule{Record: "panel " + p.Title, Expr: tg.Expr})
		}
	}
	return out
}
