package apikey_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendunning/dunning/pkg/apikey"
)

func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-keys")
	key, id, err := apikey.Create(path, "acme", []apikey.Scope{apikey.ScopeIngest, apikey.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	secret := key[strings.LastIndex(key, "_")+1:]
	if strings.Contains(string(b), secret) {
		t.Error("the file holds the secret")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	s, err := apikey.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(key)
	if err != nil || p.ID != id || p.Tenant != "acme" || !p.Has(apikey.ScopeRead) || p.Has(apikey.ScopeAdmin) || !p.Serves("acme") || p.Serves("globex") {
		t.Errorf("Authenticate = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "dk_", "dk_" + id, "dk_" + id + "_wrong", key + "x", strings.Replace(key, id, "zzzzzzzz", 1), "Bearer " + key} {
		if _, err := s.Authenticate(bad); err == nil {
			t.Errorf("Authenticate(%q) = nil error", bad)
		}
	}
	// Revoked, and reloaded: refused.
	if err := apikey.Revoke(path, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(key); !errors.Is(err, apikey.ErrUnknownKey) {
		t.Errorf("revoked key: %v, want ErrUnknownKey", err)
	}
	for _, c := range []struct {
		tenant string
		scopes []apikey.Scope
	}{
		{"acme", nil},
		{"acme", []apikey.Scope{"write"}},
		{"*", []apikey.Scope{apikey.ScopeRead}},
		{"acme", []apikey.Scope{apikey.ScopeAdmin}},
		{"a b", []apikey.Scope{apikey.ScopeRead}},
	} {
		if _, _, err := apikey.Create(path, c.tenant, c.scopes); err == nil {
			t.Errorf("Create(%q, %v) = nil error", c.tenant, c.scopes)
		}
	}
}
