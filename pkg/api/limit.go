package api

import (
	"net"
	"sync"
)

// Limit caps the connections a listener keeps open: in all, and from any
// one remote address, so that one client opening connections it never uses
// cannot exhaust the process's open files (and with them the API, health
// checks and an embedded NATS server) for everyone else. A connection over
// a cap is closed as soon as it is accepted; slow ones under the caps are
// cut off by the server's read-header timeout.
func Limit(l net.Listener, total, perAddress int) net.Listener {
	return &limitListener{Listener: l, total: total, perAddress: perAddress, open: map[string]int{}}
}

type limitListener struct {
	net.Listener
	total, perAddress int

	mu   sync.Mutex
	all  int
	open map[string]int // remote IP -> open connections
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		ok := l.all < l.total && l.open[host] < l.perAddress
		if ok {
			l.all++
			l.open[host]++
		}
		l.mu.Unlock()
		if !ok {
			_ = c.Close()
			continue
		}
		return &limitConn{Conn: c, release: func() { l.release(host) }}, nil
	}
}

func (l *limitListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all--
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
