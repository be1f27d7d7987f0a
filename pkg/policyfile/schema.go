package policyfile

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opendunning/dunning/pkg/contactrules"
	"github.com/opendunning/dunning/pkg/policy"
)

// Stage keys of a policy file, in ladder order.
var stageKeys = []string{"first_contact", "escalation", "third_party_handoff", "legal_referral"}

var stageOf = map[string]policy.Stage{
	"first_contact":       policy.StageFirstContact,
	"escalation":          policy.StageEscalation,
	"third_party_handoff": policy.StageHandoff,
	"legal_referral":      policy.StageLegal,
}

var (
	localePattern      = regexp.MustCompile(`^[a-z]{2}(-[A-Z]{2})?$`)
	placeholderPattern = regexp.MustCompile(`\{([a-z_]*)\}`)
)

// Parse validates a policy file's content; file names it in errors.
func Parse(file string, data []byte) (policy.Policy, error) {
	p := &parser{file: file}
	root := p.document(data)
	if root == nil {
		return policy.Policy{}, p.result()
	}
	pol := p.policy(root)
	if err := p.result(); err != nil {
		return policy.Policy{}, err
	}
	return pol, nil
}

func (p *parser) policy(root *yaml.Node) policy.Policy {
	f, keys := p.mapping(root, "", "version", "tenant", "product", "jurisdiction", "locales", "default_locale",
		"grace_days", "penalty_bps_per_day", "tiers", "stages", "templates", "language_check", "contact", "lender_name", "repay_wording", "callback", "holds", "promises")
	var pol policy.Policy
	for _, req := range []string{"version", "tenant", "jurisdiction", "locales", "default_locale", "tiers", "stages", "templates"} {
		if f[req] == nil && root.Kind == yaml.MappingNode {
			p.errf(root, req, "is required")
		}
	}
	if v, ok := p.str(f["version"], "version"); ok {
		if strings.TrimSpace(v) == "" || len(v) > 64 {
			p.errf(f["version"], "version", "must be 1-64 characters")
		}
		pol.Version = v
	}
	if v, ok := p.str(f["tenant"], "tenant"); ok {
		if v != "*" && !policy.ValidID(v) {
			p.errf(f["tenant"], "tenant", "must be \"*\" (every tenant) or a tenant identifier")
		}
		pol.Tenant = v
	}
	if v, ok := p.str(f["product"], "product"); ok {
		if v != "" && !policy.ValidID(v) {
			p.errf(f["product"], "product", "must be empty (every product) or a product identifier")
		}
		pol.Product = v
	}
	if v, ok := p.str(f["jurisdiction"], "jurisdiction"); ok {
		// A jurisdiction is a shipped contact-rule pack (pkg/contactrules/packs;
		// docs/domain.md, "Collection rules by jurisdiction").
		if known := contactrules.IDs(); !contains(known, v) {
			p.errf(f["jurisdiction"], "jurisdiction", "unknown jurisdiction %q (known: %s)", v, strings.Join(known, ", "))
		}
		pol.Jurisdiction = v
	}
	locales, lnodes := p.strings(f["locales"], "locales")
	for i, l := range locales {
		if !localePattern.MatchString(l) {
			p.errf(lnodes[i], fmt.Sprintf("locales[%d]", i), "%q is not a locale like zh-CN or en", l)
		}
		if slices.Index(locales, l) != i {
			p.errf(lnodes[i], fmt.Sprintf("locales[%d]", i), "duplicate locale %q", l)
		}
	}
	if f["locales"] != nil && len(locales) == 0 {
		p.errf(f["locales"], "locales", "must list at least one locale")
	}
	pol.Locales = locales
	if v, ok := p.str(f["default_locale"], "default_locale"); ok {
		if !contains(locales, v) {
			p.errf(f["default_locale"], "default_locale", "%q is not in locales", v)
		}
		pol.DefaultLocale = v
	}
	if v, ok := p.integer(f["grace_days"], "grace_days"); ok {
		if v < 0 || v > 30 {
			p.errf(f["grace_days"], "grace_days", "must be 0-30, got %d", v)
		}
		pol.GraceDays = int(v)
	}
	if v, ok := p.integer(f["penalty_bps_per_day"], "penalty_bps_per_day"); ok {
		if v < 0 || v > 100 {
			p.errf(f["penalty_bps_per_day"], "penalty_bps_per_day", "must be 0-100 basis points a day, got %d", v)
		}
		pol.PenaltyBpsPerDay = v
	}
	pol.Tiers = p.tiers(f["tiers"])
	for _, t := range pol.Tiers {
		switch t.Tier {
		case policy.TierLight:
			pol.LightMax = t.To
		case policy.TierMedium:
			pol.MediumMax = t.To
		}
	}
	var extra []string
	if lc, _ := p.mapping(f["language_check"], "language_check", "extra_banned"); lc["extra_banned"] != nil {
		extra, _ = p.strings(lc["extra_banned"], "language_check.extra_banned")
	}
	rules := textRules{lc: policy.NewLanguageCheck(extra)}
	if packs, err := contactrules.Packs(); err == nil && packs[pol.Jurisdiction] != nil {
		rules.content = packs[pol.Jurisdiction].ContentRules()
	}
	pol.Templates = p.templates(f["templates"], locales, rules)
	if v, ok := p.str(f["lender_name"], "lender_name"); ok {
		if n := len([]rune(strings.TrimSpace(v))); n == 0 || n > 64 || strings.ContainsAny(v, "{}\n") {
			p.errf(f["lender_name"], "lender_name", "must be 1-64 characters on one line, without braces")
		}
		pol.LenderName = strings.TrimSpace(v)
	}
	pol.RepayWording = p.wording(f["repay_wording"], "repay_wording", locales, func(text string) string {
		if strings.ContainsAny(text, "{}") {
			return "must be non-empty wording without placeholders"
		}
		if phrase := rules.lc.Find(text); phrase != "" {
			return fmt.Sprintf("threatening, abusive or false-legal wording %q: collectors may not threaten or intimidate", phrase)
		}
		return ""
	})
	pol.Callback = p.wording(f["callback"], "callback", locales, func(text string) string {
		if strings.ContainsAny(text, "{}\n") {
			return "must be a number or wording on one line, without placeholders"
		}
		if w := debtWording(text); w != "" {
			return fmt.Sprintf("a voicemail renders it: %q says there is a debt (12 CFR 1006.2(j))", w)
		}
		return ""
	})
	p.stages(f["stages"], &pol)
	pol.Contact = p.contact(f["contact"], pol.Jurisdiction, f["jurisdiction"])
	pol.Holds = p.holds(f["holds"])
	pol.Promises = p.promises(f["promises"])
	_ = keys
	return pol
}

// holds reads how holds pause the ladder and when they are reviewed.
func (p *parser) holds(n *yaml.Node) policy.HoldRules {
	var r policy.HoldRules
	f, _ := p.mapping(n, "holds", "ladder_clock", "review_days")
	if v, ok := p.str(f["ladder_clock"], "holds.ladder_clock"); ok {
		switch v {
		case "pause":
			r.Pause = true
		case "calendar":
		default:
			p.errf(f["ladder_clock"], "holds.ladder_clock", "%q is neither pause (days held do not count) nor calendar (they do)", v)
		}
	}
	if f["review_days"] == nil {
		return r
	}
	days, keys := p.mapping(f["review_days"], "holds.review_days")
	r.ReviewDays = map[policy.HoldKind]int{}
	for name, dn := range days {
		path := "holds.review_days." + name
		k, ok := policy.ParseHoldKind(name)
		switch {
		case !ok:
			p.errf(keys[name], path, "%q is not a hold kind (%s)", name, strings.Join(policy.HoldKindNames(), ", "))
			continue
		case k == policy.HoldBreathingSpace:
			p.errf(keys[name], path, "a breathing space lasts %d days and ends by itself: it has no review", policy.BreathingSpaceDays)
			continue
		}
		if v, ok := p.integer(dn, path); ok {
			if v < 1 || v > 365 {
				p.errf(dn, path, "must be 1-365 days, got %d", v)
			}
			r.ReviewDays[k] = int(v)
		}
	}
	return r
}

// promises reads how promises to pay are taken, kept and broken; what a
// file leaves out is the shipped rule.
func (p *parser) promises(n *yaml.Node) policy.PromiseRules {
	r := policy.DefaultPromises
	f, _ := p.mapping(n, "promises", "grace_days", "threshold_pct", "max_days", "max_broken")
	for _, x := range []struct {
		key      string
		min, max int64
		into     *int
	}{
		{"grace_days", 0, 30, &r.GraceDays}, {"threshold_pct", 1, 100, &r.ThresholdPct},
		{"max_days", 1, 365, &r.MaxDays}, {"max_broken", 0, 20, &r.MaxBroken},
	} {
		path := "promises." + x.key
		if v, ok := p.integer(f[x.key], path); ok {
			if v < x.min || v > x.max {
				p.errf(f[x.key], path, "must be %d-%d, got %d", x.min, x.max, v)
			}
			*x.into = int(v)
		}
	}
	return r
}

// weekdays by their names in a policy file.
var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday,
	"wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}

// contact reads when contacts leave: the jurisdiction's pack (its window),
// the lender's send slot and spread inside it, and the days it closes.
func (p *parser) contact(n *yaml.Node, jurisdiction string, jnode *yaml.Node) policy.ContactRules {
	r := policy.ContactRules{SendSpread: policy.DefaultSendSpread, MaxAttempts: policy.DefaultMaxAttempts}
	if packs, err := contactrules.Packs(); err == nil {
		r.Pack = packs[jurisdiction]
	}
	f, _ := p.mapping(n, "contact", "send_at", "send_spread", "decide_spread", "max_attempts", "closed_on", "blackouts", "hours")
	from, to, rule, _ := r.Pack.Window()
	window := fmt.Sprintf("%s's window %s-%s (%s)", jurisdiction, contactrules.FormatWall(from), contactrules.FormatWall(to), rule)
	at := from
	if v, ok := p.str(f["send_at"], "contact.send_at"); ok {
		w, err := contactrules.ParseWall(v)
		switch {
		case err != nil:
			p.errf(f["send_at"], "contact.send_at", "%q is not a time of day HH:MM", v)
		case w < from || w >= to:
			p.errf(f["send_at"], "contact.send_at", "%s is outside %s", v, window)
		default:
			at, r.SendAt = w, w
		}
	}
	if v, ok := p.str(f["send_spread"], "contact.send_spread"); ok {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d < 0:
			p.errf(f["send_spread"], "contact.send_spread", "%q is not a duration like 2h or 90m", v)
		case at+d > to:
			p.errf(f["send_spread"], "contact.send_spread", "%s from %s ends after %s closes", v, contactrules.FormatWall(at), window)
		default:
			r.SendSpread = d
		}
	} else if at+r.SendSpread > to {
		r.SendSpread = to - at // the default spread, cut to the window
	}
	if v, ok := p.str(f["decide_spread"], "contact.decide_spread"); ok {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d < 0:
			p.errf(f["decide_spread"], "contact.decide_spread", "%q is not a duration like 6h or 90m", v)
		case d > from:
			p.errf(f["decide_spread"], "contact.decide_spread", "%s from the day's start ends after %s opens: decisions must be made before contacts may leave", v, window)
		default:
			r.DecideSpread = d
		}
	}
	if v, ok := p.integer(f["max_attempts"], "contact.max_attempts"); ok {
		if v < 1 || v > 50 {
			p.errf(f["max_attempts"], "contact.max_attempts", "must be 1-50, got %d", v)
		}
		r.MaxAttempts = int(v)
	}
	days, dnodes := p.strings(f["closed_on"], "contact.closed_on")
	for i, d := range days {
		wd, ok := weekdays[strings.ToLower(d)]
		if !ok {
			p.errf(dnodes[i], fmt.Sprintf("contact.closed_on[%d]", i), "%q is not a weekday (monday ... sunday)", d)
		}
		r.Calendar.ClosedOn = append(r.Calendar.ClosedOn, wd)
	}
	if len(r.Calendar.ClosedOn) >= 7 {
		p.errf(f["closed_on"], "contact.closed_on", "closes every day of the week: no contact could ever leave")
	}
	if f["hours"] != nil {
		hf, hkeys := p.mapping(f["hours"], "contact.hours")
		r.Calendar.Hours = map[time.Weekday]contactrules.Hours{}
		for name, hn := range hf {
			path := "contact.hours." + name
			wd, ok := weekdays[strings.ToLower(name)]
			if !ok {
				p.errf(hkeys[name], path, "%q is not a weekday (monday ... sunday)", name)
				continue
			}
			w, _ := p.mapping(hn, path, "from", "to")
			fs, fok := p.str(w["from"], path+".from")
			ts, tok := p.str(w["to"], path+".to")
			if !fok || !tok {
				p.errf(hn, path, "needs from and to, HH:MM")
				continue
			}
			hf, ferr := contactrules.ParseWall(fs)
			ht, terr := contactrules.ParseWall(ts)
			switch {
			case ferr != nil:
				p.errf(w["from"], path+".from", "%q is not a time of day HH:MM", fs)
			case terr != nil:
				p.errf(w["to"], path+".to", "%q is not a time of day HH:MM", ts)
			case hf >= ht:
				p.errf(w["to"], path+".to", "must be after from, the same day")
			case hf < from || ht > to:
				// A lender's hours narrow the law's, never widen them.
				p.errf(hn, path, "%s-%s is not inside %s", fs, ts, window)
			default:
				r.Calendar.Hours[wd] = contactrules.Hours{From: hf, To: ht}
			}
		}
	}
	dates, datenodes := p.strings(f["blackouts"], "contact.blackouts")
	for i, d := range dates {
		t, err := time.Parse("2006-01-02", d)
		if err != nil {
			p.errf(datenodes[i], fmt.Sprintf("contact.blackouts[%d]", i), "%q is not a date YYYY-MM-DD", d)
			continue
		}
		r.Calendar.Blackout(t.Year(), t.Month(), t.Day())
	}
	return r
}

func (p *parser) tiers(n *yaml.Node) []policy.TierRange {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "tiers", "must be a list of {name, from, to}")
		return nil
	}
	var out []policy.TierRange
	var nodes []*yaml.Node
	for i, c := range n.Content {
		path := fmt.Sprintf("tiers[%d]", i)
		f, _ := p.mapping(c, path, "name", "from", "to")
		var tr policy.TierRange
		name, ok := p.str(f["name"], path+".name")
		if f["name"] == nil {
			p.errf(c, path+".name", "is required")
		} else if ok {
			t, known := policy.ParseTier(name)
			if !known {
				p.errf(f["name"], path+".name", "unknown tier %q (known: light, medium, severe)", name)
			}
			if slices.ContainsFunc(out, func(x policy.TierRange) bool { return x.Tier == t && known }) {
				p.errf(f["name"], path+".name", "tier %q listed twice", name)
			}
			tr.Tier = t
		}
		if v, ok := p.integer(f["from"], path+".from"); ok {
			tr.From = int(v)
		} else if f["from"] == nil {
			p.errf(c, path+".from", "is required")
		}
		if v, ok := p.integer(f["to"], path+".to"); ok {
			tr.To = int(v)
			if tr.To < tr.From {
				p.errf(f["to"], path+".to", "must be >= from (%d), got %d", tr.From, tr.To)
			}
		}
		out = append(out, tr)
		nodes = append(nodes, c)
	}
	if len(out) != 3 {
		p.errf(n, "tiers", "must list light, medium and severe, got %d tiers", len(out))
		return out
	}
	idx := []int{0, 1, 2}
	slices.SortStableFunc(idx, func(a, b int) int { return out[a].From - out[b].From })
	sorted := []policy.TierRange{out[idx[0]], out[idx[1]], out[idx[2]]}
	if sorted[0].From != 1 {
		p.errf(nodes[idx[0]], "tiers", "the first tier must start at DPD 1, not %d: DPD 1-%d would have no tier", sorted[0].From, sorted[0].From-1)
	}
	for i := 0; i+1 < len(sorted); i++ {
		a, b, at := sorted[i], sorted[i+1], nodes[idx[i+1]]
		field := fmt.Sprintf("tiers[%d].from", idx[i+1])
		switch {
		case a.To == 0:
			p.errf(at, field, "%s is open-ended but %s starts at DPD %d: the ranges overlap", a.Tier, b.Tier, b.From)
		case b.From <= a.To:
			p.errf(at, field, "%s (%d-%d) and %s (from %d) overlap on DPD %d-%d", a.Tier, a.From, a.To, b.Tier, b.From, b.From, a.To)
		case b.From > a.To+1:
			p.errf(at, field, "gap between %s (to %d) and %s (from %d): DPD %d-%d have no tier", a.Tier, a.To, b.Tier, b.From, a.To+1, b.From-1)
		}
	}
	out = sorted
	if last := out[len(out)-1]; last.To != 0 {
		p.errf(nodes[idx[2]], fmt.Sprintf("tiers[%d].to", idx[2]), "the last tier (%s) must be open-ended (no \"to\"): DPD %d+ would have no tier", last.Tier, last.To+1)
	}
	order := []policy.Tier{policy.TierLight, policy.TierMedium, policy.TierSevere}
	for i, t := range out {
		if t.Tier != order[i] && t.Tier != policy.TierNone {
			p.errf(n, "tiers", "tiers must run light, medium, severe by DPD; found %s in position %d", t.Tier, i+1)
			break
		}
	}
	return out
}

// textRules are what every template text is checked against: the language
// check, and the content rules of the jurisdiction's pack (a placeholder
// that texts on some channels must carry, such as us-regf's {optout}).
type textRules struct {
	lc      policy.LanguageCheck
	content []contactrules.Rule
}

func (p *parser) templates(n *yaml.Node, locales []string, rules textRules) map[string]policy.Template {
	out := map[string]policy.Template{}
	f, keys := p.mapping(n, "templates")
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	slices.Sort(names)
	allowed := append([]string{"tier", contactrules.VariantVoicemail}, policy.ChannelNames()...)
	for _, name := range names {
		path := "templates." + name
		if !policy.ValidID(name) {
			p.errf(keys[name], path, "template names may hold only letters, digits, '-' and '_'")
		}
		tf, tkeys := p.mapping(f[name], path, allowed...)
		tpl := policy.Template{Texts: map[policy.Channel]map[string]string{}}
		if tn, ok := p.str(tf["tier"], path+".tier"); ok {
			t, known := policy.ParseTier(tn)
			if !known {
				p.errf(tf["tier"], path+".tier", "unknown tier %q (known: light, medium, severe)", tn)
			}
			tpl.Tier = t
		} else if tf["tier"] == nil {
			p.errf(f[name], path+".tier", "is required")
		}
		for _, chName := range policy.ChannelNames() {
			cn := tf[chName]
			if cn == nil {
				continue
			}
			ch, _ := policy.ParseChannel(chName)
			cpath := path + "." + chName
			tpl.Texts[ch] = p.localeTexts(cn, tkeys[chName], cpath, "template", locales, func(ln *yaml.Node, lpath, text string) {
				p.checkText(ln, lpath, text, tpl.Tier, rules)
				for _, r := range rules.content {
					if r.Placeholder != "" && slices.Contains(r.Channels, chName) && !strings.Contains(text, "{"+r.Placeholder+"}") {
						p.errf(ln, lpath, "a %s text must include {%s}: %s (%s, %s)", chName, r.Placeholder, r.Text, r.ID, r.Citation)
					}
				}
			})
		}
		if len(tpl.Texts) == 0 {
			p.errf(f[name], path, "has no text for any channel")
		}
		tpl.Voicemail = p.voicemail(f[name], tf[contactrules.VariantVoicemail], path, tpl, locales, rules)
		out[name] = tpl
	}
	return out
}

// voicemail reads a template's (tn) limited-content voicemail (n, nil when
// absent): the phone text's variant, per locale, carrying nothing that
// says there is a debt (policy.VoicemailPlaceholders only). A pack content
// rule with the voicemail variant requires one beside every phone text.
func (p *parser) voicemail(tn, n *yaml.Node, path string, tpl policy.Template, locales []string, rules textRules) map[string]string {
	vpath := path + "." + contactrules.VariantVoicemail
	if n == nil {
		for _, r := range rules.content {
			if r.Variant == contactrules.VariantVoicemail && tpl.Texts[policy.ChannelPhone] != nil {
				p.errf(tn, vpath, "a template with a phone text needs a limited-content voicemail: %s (%s, %s)", r.Text, r.ID, r.Citation)
			}
		}
		return nil
	}
	if tpl.Texts[policy.ChannelPhone] == nil {
		p.errf(n, vpath, "a voicemail is the phone text's variant: the template has no phone text")
	}
	return p.localeTexts(n, n, vpath, "voicemail", locales, func(ln *yaml.Node, lpath, text string) {
		p.checkText(ln, lpath, text, policy.TierNone, rules)
		for _, m := range placeholderPattern.FindAllStringSubmatch(text, -1) {
			if contains(policy.Placeholders, m[1]) && !contains(policy.VoicemailPlaceholders, m[1]) {
				p.errf(ln, lpath, "a limited-content voicemail may not carry {%s}: only {%s}, nothing that says there is a debt (12 CFR 1006.2(j))",
					m[1], strings.Join(policy.VoicemailPlaceholders, "}, {"))
			}
		}
		for _, req := range policy.VoicemailRequired {
			if !strings.Contains(text, "{"+req+"}") {
				p.errf(ln, lpath, "a limited-content voicemail must carry {%s}: the number to call back (12 CFR 1006.2(j))", req)
			}
		}
		if w := debtWording(placeholderPattern.ReplaceAllString(text, "")); w != "" {
			p.errf(ln, lpath, "a limited-content voicemail may not say there is a debt: %q (12 CFR 1006.2(j))", w)
		}
	})
}

// debtWords say there is a debt: a voicemail (which anyone near the phone
// may hear) must not. English on word boundaries, Chinese as phrases.
var (
	debtWordsEN = regexp.MustCompile(`(?i)\b(debts?|overdue|past[ -]due|owe[ds]?|owing|collections?|collect(or|ing)?|loans?|payments?|repay(ment)?s?|arrears|balance|credit)\b`)
	debtWordsZH = []string{"逾期", "欠款", "欠费", "还款", "催收", "借款", "贷款", "债", "账单", "征信"}
)

// debtWording returns the first wording in text that says there is a
// debt, or "".
func debtWording(text string) string {
	if m := debtWordsEN.FindString(text); m != "" {
		return m
	}
	for _, w := range debtWordsZH {
		if strings.Contains(text, w) {
			return w
		}
	}
	return ""
}

// wording reads an optional mapping of locale to the lender's wording (n,
// nil when absent) at path: locales of the policy only, each text
// non-empty and passing check ("" when it does, else why not).
func (p *parser) wording(n *yaml.Node, path string, locales []string, check func(string) string) map[string]string {
	if n == nil {
		return nil
	}
	return p.eachLocale(n, path, locales, func(ln *yaml.Node, lpath, text string) {
		if strings.TrimSpace(text) == "" {
			p.errf(ln, lpath, "must not be empty")
		} else if why := check(text); why != "" {
			p.errf(ln, lpath, "%s", why)
		}
	})
}

// eachLocale reads a mapping of locale to text at path, refusing locales
// the policy lacks, and checks each text.
func (p *parser) eachLocale(n *yaml.Node, path string, locales []string, check func(ln *yaml.Node, lpath, text string)) map[string]string {
	f, keys := p.mapping(n, path)
	out := map[string]string{}
	for loc, ln := range f {
		lpath := path + "." + loc
		if !contains(locales, loc) {
			p.errf(keys[loc], lpath, "locale %q is not in locales", loc)
		}
		text, ok := p.str(ln, lpath)
		if !ok {
			continue
		}
		check(ln, lpath, text)
		out[loc] = text
	}
	return out
}

// localeTexts reads a mapping of locale to text at path (n; at is where a
// missing locale is reported): every locale of the policy, none other,
// each text checked by check.
func (p *parser) localeTexts(n, at *yaml.Node, path, what string, locales []string, check func(ln *yaml.Node, lpath, text string)) map[string]string {
	out := p.eachLocale(n, path, locales, check)
	for _, loc := range locales {
		if _, ok := out[loc]; !ok {
			p.errf(at, path, "%s missing for locale %q", what, loc)
		}
	}
	return out
}

// checkText validates one template text: known placeholders, those its tier
// requires, and the language check.
func (p *parser) checkText(n *yaml.Node, path, text string, tier policy.Tier, rules textRules) {
	if strings.TrimSpace(text) == "" {
		p.errf(n, path, "is empty")
		return
	}
	used := map[string]bool{}
	for _, m := range placeholderPattern.FindAllStringSubmatch(text, -1) {
		if !contains(policy.Placeholders, m[1]) {
			p.errf(n, path, "unknown placeholder {%s} (known: {%s})", m[1], strings.Join(policy.Placeholders, "}, {"))
		}
		used[m[1]] = true
	}
	if tier != policy.TierNone {
		var missing []string
		for _, req := range policy.RequiredPlaceholders(tier) {
			if !used[req] {
				missing = append(missing, "{"+req+"}")
			}
		}
		if len(missing) > 0 {
			p.errf(n, path, "a %s-tier template must include %s", tier, strings.Join(missing, ", "))
		}
	}
	if phrase := rules.lc.Find(text); phrase != "" {
		line := n.Line
		// In a block scalar, point at the line that holds the phrase.
		if i := strings.Index(text, phrase); i >= 0 && (n.Style&(yaml.LiteralStyle|yaml.FoldedStyle)) != 0 {
			line += 1 + strings.Count(text[:i], "\n")
		}
		p.errs = append(p.errs, Error{File: p.file, Line: line, Col: n.Column, Field: path,
			Msg: fmt.Sprintf("threatening, abusive or false-legal wording %q: collectors may not threaten or intimidate", phrase)})
	}
}

func (p *parser) stages(n *yaml.Node, pol *policy.Policy) {
	f, _ := p.mapping(n, "stages", stageKeys...)
	pol.Entries = map[policy.Stage]policy.EntryCondition{}
	for _, k := range stageKeys {
		if f[k] == nil && n != nil && n.Kind == yaml.MappingNode {
			p.errf(n, "stages."+k, "is required")
		}
	}
	// Entry DPDs first: a step's stage spans from its entry to the next stage's.
	entryDPD := map[string]int{}
	entryNode := map[string]*yaml.Node{}
	for _, k := range stageKeys {
		sf, _ := p.mapping(f[k], "stages."+k, stageFields...)
		path := "stages." + k + ".entry"
		ef, _ := p.mapping(sf["entry"], path, "dpd", "min_overdue", "missed_installments")
		var e policy.EntryCondition
		if v, ok := p.integer(ef["dpd"], path+".dpd"); ok {
			e.DPD = int(v)
		} else if ef["dpd"] == nil && f[k] != nil && k != "first_contact" {
			p.errf(f[k], path+".dpd", "is required")
		}
		if v, ok := p.integer(ef["min_overdue"], path+".min_overdue"); ok {
			if v < 0 {
				p.errf(ef["min_overdue"], path+".min_overdue", "must be >= 0")
			}
			e.MinOverdue = v
		}
		if v, ok := p.integer(ef["missed_installments"], path+".missed_installments"); ok {
			if v < 0 {
				p.errf(ef["missed_installments"], path+".missed_installments", "must be >= 0")
			}
			e.MissedInstallments = int(v)
		}
		if k == "first_contact" {
			// First contact follows overdue confirmation at once.
			if ef["dpd"] != nil && e.DPD != pol.ConfirmDPD() {
				p.errf(ef["dpd"], path+".dpd", "first contact follows overdue confirmation at DPD %d (grace_days + 1), got %d", pol.ConfirmDPD(), e.DPD)
			}
			e.DPD = pol.ConfirmDPD()
		}
		entryDPD[k] = e.DPD
		entryNode[k] = ef["dpd"]
		pol.Entries[stageOf[k]] = e
		if k == "third_party_handoff" {
			pol.Agency = "agency-default"
			if a, ok := p.str(sf["agency"], "stages.third_party_handoff.agency"); ok {
				if !policy.ValidID(a) {
					p.errf(sf["agency"], "stages.third_party_handoff.agency", "%q is not a valid identifier", a)
				}
				pol.Agency = a
			}
			pol.Agencies = p.agencies(sf["agencies"], "stages.third_party_handoff.agencies")
			if sf["agency"] != nil && sf["agencies"] != nil {
				p.errf(sf["agency"], "stages.third_party_handoff.agency", "name one agency or list the registry under agencies, not both")
			}
			if v, ok := p.integer(sf["confirm_payment_days"], "stages.third_party_handoff.confirm_payment_days"); ok {
				if v < 0 || v > 365 {
					p.errf(sf["confirm_payment_days"], "stages.third_party_handoff.confirm_payment_days", "must be 0-365 (0: not watched), got %d", v)
				}
				pol.AgencyPaymentConfirmDays = int(v)
			}
		} else {
			for _, key := range []string{"agency", "agencies", "confirm_payment_days"} {
				if sf[key] != nil {
					p.errf(sf[key], "stages."+k+"."+key, "only third_party_handoff places accounts with an agency")
				}
			}
		}
		if k != "legal_referral" {
			for _, key := range []string{"final_notice", "limitation_days"} {
				if sf[key] != nil {
					p.errf(sf[key], "stages."+k+"."+key, "only legal_referral has a pre-legal gate")
				}
			}
		}
	}
	for i := 1; i < len(stageKeys); i++ {
		prev, cur := stageKeys[i-1], stageKeys[i]
		if f[cur] != nil && entryDPD[cur] <= entryDPD[prev] {
			p.errf(entryNode[cur], "stages."+cur+".entry.dpd", "must be after %s (DPD %d), got %d", prev, entryDPD[prev], entryDPD[cur])
		}
	}
	pol.EscalateDPD = entryDPD["escalation"]
	pol.HandoffDPD = entryDPD["third_party_handoff"]
	pol.LegalDPD = entryDPD["legal_referral"]

	for i, k := range stageKeys {
		sf, _ := p.mapping(f[k], "", stageFields...)
		sn := sf["steps"]
		if sn == nil {
			continue
		}
		path := "stages." + k + ".steps"
		if k == "third_party_handoff" || k == "legal_referral" {
			// Contacts after handoff are the agency's; legal referral makes none.
			p.errf(sn, path, "%s makes no contacts of its own: the agency or the court takes over", k)
			continue
		}
		if sn.Kind != yaml.SequenceNode {
			p.errf(sn, path, "must be a list of {dpd, channels, template}")
			continue
		}
		lo := entryDPD[k]
		hi := 0 // open-ended
		if i+1 < len(stageKeys) {
			hi = entryDPD[stageKeys[i+1]] - 1
		}
		last := 0
		for j, c := range sn.Content {
			spath := fmt.Sprintf("%s[%d]", path, j)
			sf, _ := p.mapping(c, spath, "dpd", "channels", "template")
			st := policy.CadenceStep{Stage: stageOf[k]}
			if v, ok := p.integer(sf["dpd"], spath+".dpd"); ok {
				st.DPD = int(v)
				if st.DPD < lo || (hi > 0 && st.DPD > hi) {
					rng := fmt.Sprintf("DPD %d-%d", lo, hi)
					if hi == 0 {
						rng = fmt.Sprintf("DPD %d+", lo)
					}
					p.errf(sf["dpd"], spath+".dpd", "step at DPD %d is outside its stage %s (%s)", st.DPD, k, rng)
				}
				if st.DPD <= last {
					p.errf(sf["dpd"], spath+".dpd", "steps must be in increasing DPD order; %d follows %d", st.DPD, last)
				}
				last = st.DPD
			} else if sf["dpd"] == nil {
				p.errf(c, spath+".dpd", "is required")
			}
			st.Channels, st.Template = p.contactOf(c, sf, spath, pol)
			pol.Cadence = append(pol.Cadence, st)
		}
	}
	lf, _ := p.mapping(f["legal_referral"], "", stageFields...)
	pol.Legal = p.legal(lf, pol)
	for _, k := range []string{"first_contact", "escalation"} {
		if f[k] == nil {
			continue
		}
		st := stageOf[k]
		i := slices.IndexFunc(pol.Cadence, func(c policy.CadenceStep) bool { return c.Stage == st })
		if i < 0 || pol.Cadence[i].DPD != pol.Entries[st].DPD {
			p.errf(f[k], "stages."+k+".steps", "must start with a contact at the stage's entry, DPD %d", pol.Entries[st].DPD)
		}
	}
}

// stageFields are the keys of a stage's mapping (the agency's are
// handoff's only, the pre-legal gate's legal referral's only).
var stageFields = []string{"entry", "steps", "agency", "agencies", "confirm_payment_days", "final_notice", "limitation_days"}

// contactOf reads a contact's channels and template (a cadence step's, the
// final notice's), checking the template has a text for every channel and
// locale.
func (p *parser) contactOf(n *yaml.Node, f map[string]*yaml.Node, path string, pol *policy.Policy) ([]policy.Channel, string) {
	var channels []policy.Channel
	chans, cnodes := p.strings(f["channels"], path+".channels")
	if f["channels"] == nil {
		p.errf(n, path+".channels", "is required")
	}
	for ci, cname := range chans {
		ch, ok := policy.ParseChannel(cname)
		if !ok {
			p.errf(cnodes[ci], fmt.Sprintf("%s.channels[%d]", path, ci), "unknown channel %q (known: %s)", cname, strings.Join(policy.ChannelNames(), ", "))
			continue
		}
		channels = append(channels, ch)
	}
	tn, ok := p.str(f["template"], path+".template")
	if !ok {
		if f["template"] == nil {
			p.errf(n, path+".template", "is required")
		}
		return channels, ""
	}
	tpl, known := pol.Templates[tn]
	if !known {
		p.errf(f["template"], path+".template", "unknown template %q", tn)
		return channels, tn
	}
	for ci, ch := range channels {
		texts, has := tpl.Texts[ch]
		if !has {
			p.errf(cnodes[ci], fmt.Sprintf("%s.channels[%d]", path, ci), "template %q has no %s text", tn, ch)
			continue
		}
		for _, loc := range pol.Locales {
			if _, ok := texts[loc]; !ok {
				p.errf(f["template"], path+".template", "template %q has no %s text for locale %q", tn, ch, loc)
			}
		}
	}
	return channels, tn
}

// legal reads legal referral's pre-legal gate: final_notice {reply_days,
// channels, template} and limitation_days.
func (p *parser) legal(f map[string]*yaml.Node, pol *policy.Policy) policy.LegalRules {
	const path = "stages.legal_referral"
	var r policy.LegalRules
	if v, ok := p.integer(f["limitation_days"], path+".limitation_days"); ok {
		if v < 0 {
			p.errf(f["limitation_days"], path+".limitation_days", "must be >= 0 (0: no limitation period), got %d", v)
		}
		r.LimitationDays = int(v)
	}
	n := f["final_notice"]
	if n == nil {
		return r
	}
	npath := path + ".final_notice"
	nf, _ := p.mapping(n, npath, "reply_days", "channels", "template")
	fn := &policy.FinalNotice{}
	if v, ok := p.integer(nf["reply_days"], npath+".reply_days"); ok {
		if v < 1 || v > 365 {
			p.errf(nf["reply_days"], npath+".reply_days", "must be 1-365 days, got %d", v)
		}
		fn.ReplyDays = int(v)
	} else if nf["reply_days"] == nil {
		p.errf(n, npath+".reply_days", "is required")
	}
	fn.Channels, fn.Template = p.contactOf(n, nf, npath, pol)
	if tpl, ok := pol.Templates[fn.Template]; ok {
		// A final notice that does not say until when the borrower may
		// reply is not one.
		for ch, texts := range tpl.Texts {
			if !slices.Contains(fn.Channels, ch) {
				continue
			}
			for loc, text := range texts {
				if !strings.Contains(text, "{reply_by}") {
					p.errf(nf["template"], npath+".template", "template %q's %s text for %q must include {reply_by}, the reply deadline", fn.Template, ch, loc)
				}
			}
		}
	}
	r.FinalNotice = fn
	return r
}

// agencies parses the agency registry: a list of {id, name, regions, weight, capacity, placement_days}.
func (p *parser) agencies(n *yaml.Node, path string) []policy.Agency {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		p.errf(n, path, "must be a non-empty list of {id, name, regions, weight, capacity, placement_days}")
		return nil
	}
	var out []policy.Agency
	for i, c := range n.Content {
		ap := fmt.Sprintf("%s[%d]", path, i)
		f, _ := p.mapping(c, ap, "id", "name", "regions", "weight", "capacity", "placement_days")
		var a policy.Agency
		if id, ok := p.str(f["id"], ap+".id"); ok {
			if !policy.ValidID(id) {
				p.errf(f["id"], ap+".id", "%q is not a valid identifier", id)
			}
			if slices.ContainsFunc(out, func(x policy.Agency) bool { return x.ID == id }) {
				p.errf(f["id"], ap+".id", "agency %q listed twice", id)
			}
			a.ID = id
		} else if f["id"] == nil {
			p.errf(c, ap+".id", "is required")
		}
		a.Name, _ = p.str(f["name"], ap+".name")
		regions, nodes := p.strings(f["regions"], ap+".regions")
		for j, r := range regions {
			if !policy.ValidRegion(r) {
				p.errf(nodes[j], fmt.Sprintf("%s.regions[%d]", ap, j), "%q is not an ISO 3166-2 code such as \"CN-31\"", r)
			}
		}
		a.Regions = regions
		a.Weight = 1
		if v, ok := p.integer(f["weight"], ap+".weight"); ok {
			if v < 1 || v > 1000 {
				p.errf(f["weight"], ap+".weight", "must be 1-1000, got %d", v)
			}
			a.Weight = int(v)
		}
		if v, ok := p.integer(f["capacity"], ap+".capacity"); ok {
			if v < 0 {
				p.errf(f["capacity"], ap+".capacity", "must be >= 0 (0: no limit), got %d", v)
			}
			a.Capacity = int(v)
		}
		if v, ok := p.integer(f["placement_days"], ap+".placement_days"); ok {
			if v < 0 || v > 3650 {
				p.errf(f["placement_days"], ap+".placement_days", "must be 0-3650 (0: no expiry), got %d", v)
			}
			a.PlacementDays = int(v)
		}
		out = append(out, a)
	}
	return out
}
