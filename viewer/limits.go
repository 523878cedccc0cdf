package viewer

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The web preview faces whatever connects to its port: a browser left open
// on the page for days, a scanner, a client that opens thousands of
// connections and sends nothing. Each connection costs a descriptor, a
// goroutine and buffers, so the server bounds them (Server.MaxConns, one
// more is answered 503 and closed at once), closes keep-alive connections
// that stay idle (Server.IdleTimeout) and connections that send no request
// header (ReadHeaderTimeout), and drops a stream client that does not take
// a picture within partTimeout.

// Defaults of the limits.
const (
	DefaultMaxConns    = 256
	DefaultIdleTimeout = 30 * time.Second
	readHeaderTimeout  = 10 * time.Second
)

// refusal is what a connection over the limit is told before it is closed.
var refusal = func() []byte {
	body := "too many connections to this preview; retry\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n" +
		"Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// limitListener accepts at most max connections at a time.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Add(1)
		// A new socket's send buffer is empty: the write does not block.
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(refusal)
		c.Close()
	}
}

// limitConn gives its place back when it closes (once, however often
// Close is called).
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
