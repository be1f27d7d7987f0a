// Package apikey is who may call the HTTP API: per-tenant API keys with
// scopes, stored hashed in a file the process reloads when it changes.
//
// A key is "dk_<id>_<secret>": the ID names it (in logs, in the timeline's
// principal, to revoke it), the secret is 32 random bytes from crypto/rand.
// The file keeps only the secret's SHA-256: with a secret of 256 random
// bits a fast hash is enough (a slow password hash guards guessable
// secrets; these are not), and a request costs one hash and one
// constant-time comparison. Nothing here is home-made cryptography: the
// standard library's crypto/rand, crypto/sha256 and crypto/subtle.
//
// Why not signed bearer tokens (JWTs): a key must be revocable at once, and
// a lender's deployment has a handful of callers, so a list the server
// checks is simpler than tokens plus a revocation list, and leaves nothing
// to verify but a hash.
package apikey

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opendunning/dunning/pkg/access"
	"github.com/opendunning/dunning/pkg/policy"
)

// Scope is what a key may do.
type Scope string

const (
	// ScopeIngest posts lender events for the key's tenant.
	ScopeIngest Scope = "ingest"
	// ScopeRead reads the key's tenant's timelines (verification codes hidden).
	ScopeRead Scope = "read"
	// ScopeLegal exports the key's tenant's legal evidence packets (which
	// seals the loan's log: a write).
	ScopeLegal Scope = "legal"
	// ScopeAdmin reads and posts for every tenant and sees verification codes.
	ScopeAdmin Scope = "admin"
)

var scopes = []Scope{ScopeIngest, ScopeRead, ScopeLegal, ScopeAdmin}

// AnyTenant is the tenant of an admin key.
const AnyTenant = "*"

// Principal is an authenticated caller.
type Principal struct {
	// ID is the key's ID; String is what the timeline records.
	ID     string
	Tenant string
	Scopes []Scope
}

// String names the caller in timelines and logs: "apikey:<id>".
func (p Principal) String() string { return "apikey:" + p.ID }

// Has reports whether the principal holds the scope (admin holds all).
func (p Principal) Has(s Scope) bool {
	return slices.Contains(p.Scopes, s) || slices.Contains(p.Scopes, ScopeAdmin)
}

// Serves reports whether the principal may act for tenant.
func (p Principal) Serves(tenant string) bool {
	return p.Tenant == AnyTenant || p.Tenant == tenant
}

// Errors of Authenticate.
var (
	ErrNoKey      = errors.New("no API key")
	ErrUnknownKey = errors.New("unknown or revoked API key")
)

type entry struct {
	hash   [sha256.Size]byte
	tenant string
	scopes []Scope
}

// Store holds the keys of one file, reloaded when the file changes.
type Store struct {
	Path string

	mu    sync.RWMutex
	keys  map[string]entry
	stamp string
}

// Open loads the key file (which must exist; it may be empty).
func Open(path string) (*Store, error) {
	s := &Store{Path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the file again.
func (s *Store) Reload() error {
	keys, err := read(s.Path)
	if err != nil {
		return err
	}
	st := stampOf(s.Path)
	s.mu.Lock()
	s.keys, s.stamp = keys, st
	s.mu.Unlock()
	return nil
}

// Watch reloads the file whenever it changes, checking every interval,
// until stop is closed; report is told of each reload's outcome.
func (s *Store) Watch(stop <-chan struct{}, interval time.Duration, report func(error)) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
		s.mu.RLock()
		last := s.stamp
		s.mu.RUnlock()
		if stampOf(s.Path) == last {
			continue
		}
		err := s.Reload()
		if report != nil {
			report(err)
		}
	}
}

func stampOf(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
}

// Authenticate checks an "Authorization: Bearer <key>" value's key.
func (s *Store) Authenticate(key string) (Principal, error) {
	if key == "" {
		return Principal{}, ErrNoKey
	}
	id, secret, ok := parse(key)
	if !ok {
		return Principal{}, ErrUnknownKey
	}
	s.mu.RLock()
	e, found := s.keys[id]
	s.mu.RUnlock()
	h := sha256.Sum256([]byte(secret))
	// Compared in constant time even for an unknown ID.
	if subtle.ConstantTimeCompare(h[:], e.hash[:]) != 1 || !found {
		return Principal{}, ErrUnknownKey
	}
	return Principal{ID: id, Tenant: e.tenant, Scopes: slices.Clone(e.scopes)}, nil
}

const prefix = "dk_"

func parse(key string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	return id, secret, ok && id != "" && secret != ""
}

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Create adds a key for tenant (AnyTenant for an admin key) with scopes to
// the file (created if missing, mode 0600) and returns the key, which is
// shown this once and stored nowhere.
func Create(path, tenant string, sc []Scope) (key, id string, err error) {
	if tenant != AnyTenant && !policy.ValidID(tenant) {
		return "", "", fmt.Errorf("tenant %q: 1-64 characters of A-Z, a-z, 0-9, '-' or '_' (or %s with the admin scope)", tenant, AnyTenant)
	}
	if len(sc) == 0 {
		return "", "", errors.New("give at least one scope: ingest, read or admin")
	}
	for _, s := range sc {
		if !slices.Contains(scopes, s) {
			return "", "", fmt.Errorf("scope %q: want ingest, read or admin", s)
		}
	}
	if tenant == AnyTenant && !slices.Contains(sc, ScopeAdmin) {
		return "", "", fmt.Errorf("a key for every tenant (%s) needs the admin scope", AnyTenant)
	}
	if tenant != AnyTenant && slices.Contains(sc, ScopeAdmin) {
		return "", "", fmt.Errorf("the admin scope is for every tenant: create it with tenant %s", AnyTenant)
	}
	raw := make([]byte, 5+32)
	_, _ = rand.Read(raw) // crypto/rand never fails
	id = strings.ToLower(encoding.EncodeToString(raw[:5]))
	secret := encoding.EncodeToString(raw[5:])
	h := sha256.Sum256([]byte(secret))
	names := make([]string, len(sc))
	for i, s := range sc {
		names[i] = string(s)
	}
	line := fmt.Sprintf("%s %s %s %s\n", id, hex.EncodeToString(h[:]), tenant, strings.Join(names, ","))
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	if len(b) == 0 {
		b = []byte("# API keys: id sha256(secret) tenant scopes. Written by dunctl apikey; secrets are never stored.\n")
	}
	if err := access.WriteFileAtomic(path, append(b, line...), 0o600); err != nil {
		return "", "", err
	}
	return prefix + id + "_" + secret, id, nil
}

// Revoke removes the key with the given ID.
func Revoke(path, id string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == id {
			found = true
			continue
		}
		out.WriteString(sc.Text() + "\n")
	}
	if !found {
		return fmt.Errorf("no key with ID %q in %s", id, path)
	}
	return access.WriteFileAtomic(path, out.Bytes(), 0o600)
}

// Listed is one key of List, without its hash.
type Listed struct {
	ID, Tenant string
	Scopes     []Scope
}

// List returns the file's keys, sorted by ID.
func List(path string) ([]Listed, error) {
	keys, err := read(path)
	if err != nil {
		return nil, err
	}
	var out []Listed
	for id, e := range keys {
		out = append(out, Listed{id, e.tenant, e.scopes})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func read(path string) (map[string]entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("API keys: %w", err)
	}
	keys := map[string]entry{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("%s:%d: want: id sha256 tenant scopes", path, n)
		}
		var e entry
		h, err := hex.DecodeString(f[1])
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%s:%d: the hash is not a hex SHA-256", path, n)
		}
		copy(e.hash[:], h)
		e.tenant = f[2]
		for _, s := range strings.Split(f[3], ",") {
			if !slices.Contains(scopes, Scope(s)) {
				return nil, fmt.Errorf("%s:%d: scope %q: want ingest, read or admin", path, n, s)
			}
			e.scopes = append(e.scopes, Scope(s))
		}
		if _, dup := keys[f[0]]; dup {
			return nil, fmt.Errorf("%s:%d: key ID %s twice", path, n, f[0])
		}
		keys[f[0]] = e
	}
	return keys, sc.Err()
}
