package access

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/opendunning/dunning/pkg/topology"
)

// Keyring is a directory of credentials: for each identity, the public
// keys the server accepts (<id>.pub, one per line) and, where this
// directory created the key, its seed (<id>.nk, mode 0600, to hand to the
// party and delete here). ServerConfig turns the public keys into the
// server's accounts and users; nothing secret goes into it.
//
// An identity may hold several keys at once, so a credential is rotated
// without downtime: create a new key, move the party to it, revoke the old.
type Keyring struct {
	Dir string
}

// ServerConfigFile is the name of the generated server configuration in
// the keyring's directory, included by the cluster's and dunningd's.
const ServerConfigFile = "auth.conf"

// PartitionsFile records, in the keyring's directory, how many partitions
// the deployment's loans are spread over (K; absent: one). The server's
// configuration depends on it: each service's permissions name every
// partition's stream and consumers, and the lenders' intake subjects are
// mapped to their loan's partition.
const PartitionsFile = "partitions"

// Partitions is the deployment's K (1 when never set).
func (k Keyring) Partitions() (topology.Partitions, error) {
	b, err := os.ReadFile(filepath.Join(k.Dir, PartitionsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err == nil {
		err = topology.Partitions(n).Validate()
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(k.Dir, PartitionsFile), err)
	}
	return topology.Partitions(n), nil
}

// SetPartitions records the deployment's K (ServerConfig writes it into
// the server's configuration; dunctl provision must be given the same).
func (k Keyring) SetPartitions(n topology.Partitions) error {
	if err := n.Validate(); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(k.Dir, PartitionsFile), []byte(strconv.Itoa(int(n))+"\n"), 0o644)
}

// ErrUnknownIdentity is returned for an identity without keys.
var ErrUnknownIdentity = errors.New("no such identity")

// Create makes a new key for id, adds its public key to the identity's
// and writes its seed to <id>.nk (replacing an earlier seed file, never an
// accepted public key: the old key stays valid until revoked).
func (k Keyring) Create(id Identity) (seedFile, public string, err error) {
	if err := id.Validate(); err != nil {
		return "", "", err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", "", err
	}
	public, err = kp.PublicKey()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return "", "", err
	}
	seedFile = k.SeedFile(id)
	if err := WriteFileAtomic(seedFile, append(seed, '\n'), 0o600); err != nil {
		return "", "", err
	}
	keys, err := k.Keys(id)
	if err != nil && !errors.Is(err, ErrUnknownIdentity) {
		return "", "", err
	}
	if err := k.writeKeys(id, append(keys, public)); err != nil {
		return "", "", err
	}
	return seedFile, public, nil
}

// SeedFile is where Create leaves id's seed.
func (k Keyring) SeedFile(id Identity) string { return filepath.Join(k.Dir, id.String()+".nk") }

func (k Keyring) pubFile(id Identity) string { return filepath.Join(k.Dir, id.String()+".pub") }

// Keys returns the public keys the server accepts for id.
func (k Keyring) Keys(id Identity) ([]string, error) {
	b, err := os.ReadFile(k.pubFile(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownIdentity, id)
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !nkeys.IsValidPublicUserKey(line) {
			return nil, fmt.Errorf("%s: %q is not an nkey user public key", k.pubFile(id), line)
		}
		keys = append(keys, line)
	}
	return keys, sc.Err()
}

// Revoke withdraws one of id's keys, or all of them when public is empty.
// The server drops the connections of a withdrawn key when it reloads its
// configuration.
func (k Keyring) Revoke(id Identity, public string) error {
	keys, err := k.Keys(id)
	if err != nil {
		return err
	}
	if public == "" {
		_ = os.Remove(k.SeedFile(id))
		return os.Remove(k.pubFile(id))
	}
	i := slices.Index(keys, public)
	if i < 0 {
		return fmt.Errorf("%s has no key %s", id, public)
	}
	keys = slices.Delete(keys, i, i+1)
	if len(keys) == 0 {
		_ = os.Remove(k.SeedFile(id))
		return os.Remove(k.pubFile(id))
	}
	return k.writeKeys(id, keys)
}

func (k Keyring) writeKeys(id Identity, keys []string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# public nkeys of %s, one per line; its seeds are never stored here for long\n", id)
	for _, key := range keys {
		b.WriteString(key + "\n")
	}
	return WriteFileAtomic(k.pubFile(id), b.Bytes(), 0o644)
}

// Identities lists every identity with keys, sorted.
func (k Keyring) Identities() ([]Identity, error) {
	matches, err := filepath.Glob(filepath.Join(k.Dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	var out []Identity
	for _, m := range matches {
		id, err := ParseIdentity(strings.TrimSuffix(filepath.Base(m), ".pub"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// Option is the nats.go connection option for id: its seed from the
// keyring, and its inbox prefix.
func (k Keyring) Option(id Identity) (nats.Option, error) {
	return ClientOption(id, k.SeedFile(id))
}

// ClientOption authenticates a connection as id with the seed in seedFile
// and gives it id's inbox prefix (the only replies it may subscribe to).
func ClientOption(id Identity, seedFile string) (nats.Option, error) {
	auth, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return nil, fmt.Errorf("credential of %s: %w", id, err)
	}
	inbox := nats.CustomInboxPrefix(id.Inbox())
	return func(o *nats.Options) error {
		if err := auth(o); err != nil {
			return err
		}
		return inbox(o)
	}, nil
}

// ServerConfig writes the server's accounts and users (auth.conf) from the
// keyring: grants gives each service's grant (an unknown service name is
// an error). It returns the file's path.
func (k Keyring) ServerConfig(grants func(service string) (Grant, bool)) (string, error) {
	ids, err := k.Identities()
	if err != nil {
		return "", err
	}
	parts, err := k.Partitions()
	if err != nil {
		return "", err
	}
	type user struct {
		key  string
		perm *Permissions
	}
	// Every account exists whether or not it has users yet: a credential
	// added later is a user added by a configuration reload, never a new
	// account (nats-server v2.15.3 does not wire the import of an account
	// that a reload introduces: its publishes found no stream until a
	// restart; see nats-server#8560 for the cluster case).
	accounts := map[string][]user{AccountDunning: nil, AccountLenders: nil, AccountAgencies: nil}
	for _, id := range ids {
		keys, err := k.Keys(id)
		if err != nil {
			return "", err
		}
		var perm *Permissions
		switch id.Role {
		case RoleAdmin:
		case RoleService:
			g, ok := grants(id.Name)
			if !ok {
				return "", fmt.Errorf("identity %s: no service named %q", id, id.Name)
			}
			p := ServicePermissions(id, g, parts)
			perm = &p
		case RoleLender:
			p := LenderPermissions(id)
			perm = &p
		case RoleAgency:
			p := AgencyPermissions(id)
			perm = &p
		}
		for _, key := range keys {
			accounts[id.Account()] = append(accounts[id.Account()], user{key, perm})
		}
	}
	// What lenders publish is mapped to its loan's partition in both
	// accounts (the lenders', where their publishes arrive, and the
	// pipeline's, for its own tools), and the stored form is what is
	// exported and imported.
	from, to := parts.IntakeMapping()
	mapping := fmt.Sprintf("    mappings: {%s: %s}\n", q(from), q(to))
	intake := q(topology.IntakeFilter())
	rejected, rejectionGet := q(topology.RejectionSubject("*", "*")), q(RejectionGet("*", "*"))
	var b bytes.Buffer
	b.WriteString("# Generated by dunctl credentials from the public keys in this directory: do not edit.\n")
	b.WriteString("# Accounts and users of the dunning pipeline (see pkg/access). No user is anonymous.\n")
	b.WriteString("accounts {\n")
	names := make([]string, 0, len(accounts))
	for n := range accounts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %s {\n", q(n))
		switch n {
		case AccountDunning:
			// Every tenant's intake, to the lenders' account only; which
			// tenant a lender reaches is its user's permission.
			// And why intake refused an event: live, and a loan's latest.
			b.WriteString("    jetstream: enabled\n")
			b.WriteString(mapping)
			lenders := q(AccountLenders)
			fmt.Fprintf(&b, "    exports: [\n      {service: %s, accounts: [%s]}\n      {stream: %s, accounts: [%s]}\n      {service: %s, accounts: [%s]}\n",
				intake, lenders, rejected, lenders, rejectionGet, lenders)
			// The agencies' feed: each agency's consumer, to the
			// agencies' account only; which consumer an agency reaches is
			// its user's permission.
			for _, e := range AgencyImports() {
				fmt.Fprintf(&b, "      {service: %s, accounts: [%s], response_type: %s}\n", q(e.Subject), q(AccountAgencies), e.Response)
			}
			b.WriteString("    ]\n")
		case AccountLenders:
			b.WriteString(mapping)
			dunning := q(AccountDunning)
			fmt.Fprintf(&b, "    imports: [\n      {service: {account: %s, subject: %s}}\n      {stream: {account: %s, subject: %s}}\n      {service: {account: %s, subject: %s}}\n    ]\n",
				dunning, intake, dunning, rejected, dunning, rejectionGet)
		case AccountAgencies:
			b.WriteString("    imports: [\n")
			for _, e := range AgencyImports() {
				fmt.Fprintf(&b, "      {service: {account: %s, subject: %s}, to: %s}\n", q(AccountDunning), q(e.Subject), q(e.To))
			}
			b.WriteString("    ]\n")
		}
		b.WriteString("    users: [\n")
		for _, u := range accounts[n] {
			if u.perm == nil {
				fmt.Fprintf(&b, "      {nkey: %s}\n", q(u.key))
				continue
			}
			fmt.Fprintf(&b, "      {nkey: %s, permissions: {publish: %s, subscribe: %s}}\n",
				q(u.key), allow(u.perm.Publish), allow(u.perm.Subscribe))
		}
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	path := filepath.Join(k.Dir, ServerConfigFile)
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return "", err
	}
	return path, WriteFileAtomic(path, b.Bytes(), 0o644)
}

// q quotes a string for the server's configuration, whose escapes are
// those of Go for the printable ASCII that subjects, keys and names use.
func q(s string) string { return strconv.Quote(s) }

// allow is a permission that allows exactly the subjects s. The server
// reads an empty allow list as "allow everything", so nothing allowed is
// written as a deny of everything.
func allow(s []string) string {
	if len(s) == 0 {
		return `{deny: [">"]}`
	}
	return "{allow: " + list(s) + "}"
}

func list(s []string) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = q(v)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// WriteFileAtomic replaces path with data: a reader (the server reloading
// its configuration, a process reloading its API keys) sees the old file
// or the new one, never half of one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
