package policyfile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opendunning/dunning/pkg/policy"
)

// Book is a set of policies: one per tenant and optionally per product, and
// a default (tenant "*") for tenants without their own.
type Book struct {
	byKey map[string]policy.Policy
	files map[string]time.Time // path -> modification time, to notice changes
}

func key(tenant, product string) string { return tenant + "/" + product }

// For returns the policy of a tenant's product: the product's own, else the
// tenant's, else the default.
func (b *Book) For(tenant, product string) policy.Policy {
	for _, k := range []string{key(tenant, product), key(tenant, ""), key("*", "")} {
		if p, ok := b.byKey[k]; ok {
			return p
		}
	}
	return b.byKey[key("*", "")]
}

// Versions lists "tenant/product=version" for logs.
func (b *Book) Versions() []string {
	var out []string
	for k, p := range b.byKey {
		out = append(out, k+"="+p.Version)
	}
	slices.Sort(out)
	return out
}

// LoadDir reads every *.yaml and *.yml file of dir. Without a default
// policy (tenant "*") among them, the shipped one is the default. Every
// problem of every file is reported at once.
func LoadDir(dir string) (*Book, error) {
	b := &Book{byKey: map[string]policy.Policy{}, files: map[string]time.Time{}}
	var paths []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("listing policies: %w", err)
		}
		paths = append(paths, m...)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	slices.Sort(paths)
	var errs []error
	from := map[string]string{}
	for _, path := range paths {
		st, err := os.Stat(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.files[path] = st.ModTime()
		p, err := Load(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k := key(p.Tenant, p.Product)
		if other, dup := from[k]; dup {
			errs = append(errs, fmt.Errorf("%s: tenant %q product %q already has a policy in %s", path, p.Tenant, p.Product, other))
			continue
		}
		if p.Tenant == "*" && p.Product != "" {
			errs = append(errs, fmt.Errorf("%s: the default policy (tenant \"*\") cannot name a product", path))
			continue
		}
		from[k] = path
		b.byKey[k] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if _, ok := b.byKey[key("*", "")]; !ok {
		d, err := Default()
		if err != nil {
			return nil, err
		}
		b.byKey[key("*", "")] = d
	}
	return b, nil
}

// changed reports whether dir's policy files differ from those b was loaded from.
func (b *Book) changed(dir string) bool {
	var paths []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		paths = append(paths, m...)
	}
	if len(paths) != len(b.files) {
		return true
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.ModTime().Equal(b.files[p]) {
			return true
		}
	}
	return false
}

// Live is a Book that reloads: on SIGHUP, and when a file in its directory
// changes. A policy that fails to load is reported and the previous one
// stays in force, so a bad edit never stops the pipeline.
type Live struct {
	dir  string
	book atomic.Pointer[Book]
	// OnReload is called after every attempt, with nil on success.
	OnReload func(err error)
}

// NewLive loads dir; an error here means the service must not start.
func NewLive(dir string) (*Live, error) {
	b, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Live{dir: dir}
	l.book.Store(b)
	return l, nil
}

// Book is the policies in force.
func (l *Live) Book() *Book { return l.book.Load() }

// Reload loads the directory again and, if it is valid, puts it in force.
func (l *Live) Reload() error {
	b, err := LoadDir(l.dir)
	if err == nil {
		l.book.Store(b)
	}
	if l.OnReload != nil {
		l.OnReload(err)
	}
	return err
}

// Watch reloads on SIGHUP and when the directory's files change (checked
// every interval) until ctx ends.
func (l *Live) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-t.C:
			if !l.Book().changed(l.dir) {
				continue
			}
		}
		if err := l.Reload(); err != nil {
			log.Error("policy reload failed; the previous policies stay in force", "err", strings.ReplaceAll(err.Error(), "\n", "; "))
			// Do not retry a bad edit every tick: wait for the next change.
			l.markSeen()
			continue
		}
		log.Info("policies reloaded", "versions", l.Book().Versions())
	}
}

// markSeen records the directory's current files so that a failed reload
// is not retried until something changes again.
func (l *Live) markSeen() {
	cur := l.Book()
	seen := &Book{byKey: cur.byKey, files: map[string]time.Time{}}
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(l.dir, pat))
		for _, p := range m {
			if st, err := os.Stat(p); err == nil {
				seen.files[p] = st.ModTime()
			}
		}
	}
	l.book.CompareAndSwap(cur, seen)
}

// Fixed is a Live book holding one policy as the default, never reloaded.
func Fixed(p policy.Policy) *Live {
	l := &Live{}
	l.book.Store(&Book{byKey: map[string]policy.Policy{key("*", ""): p}, files: map[string]time.Time{}})
	return l
}
