package faultproxy

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Plan says which fraction of requests gets which fault. The fractions are
// drawn from one seeded stream, so a run with the same seed and the same
// request order injects the same faults; at most one fault per request.
type Plan struct {
	Seed int64
	// Errors is the fraction answered 503 SlowDown or 500 InternalError
	// without reaching the server.
	Errors float64
	// Resets is the fraction whose connection is closed without a reply:
	// half before the request reaches the server, half after it was applied.
	Resets float64
	// Slow is the fraction delayed by SlowDelay before being forwarded.
	Slow      float64
	SlowDelay time.Duration
	// Truncate is the fraction of object GETs whose body is cut short
	// (after the full Content-Length was declared).
	Truncate float64
	// ListLag hides from ListObjectsV2 replies the keys PUT through the
	// proxy less than ListLag ago. Zero: listings are current.
	ListLag time.Duration
}

// Counts are the faults injected so far (and the requests seen).
type Counts struct {
	Requests     int64 // forwarded or faulted, while enabled or not
	Errors503    int64
	Errors500    int64
	ResetsBefore int64 // closed before the server saw the request
	ResetsAfter  int64 // closed after the server applied it
	Slow         int64
	Truncated    int64
	LaggedLists  int64 // listings that omitted at least one key
	OmittedKeys  int64 // keys omitted from listings
}

// Faults is the number of faults injected (a lagging listing counts once).
func (c Counts) Faults() int64 {
	return c.Errors503 + c.Errors500 + c.ResetsBefore + c.ResetsAfter + c.Slow + c.Truncated + c.LaggedLists
}

func (c Counts) String() string {
	return fmt.Sprintf("%d requests: %d SlowDown, %d InternalError, %d resets before and %d after the server, %d slow, %d truncated bodies, %d lagging listings (%d keys hidden)",
		c.Requests, c.Errors503, c.Errors500, c.ResetsBefore, c.ResetsAfter, c.Slow, c.Truncated, c.LaggedLists, c.OmittedKeys)
}

// Proxy is a fault-injecting reverse proxy listening on 127.0.0.1.
type Proxy struct {
	// URL is the proxy's base URL, to give clients as their S3 endpoint.
	URL string

	srv     *http.Server
	ln      net.Listener
	rp      *httputil.ReverseProxy
	enabled atomic.Bool

	mu   sync.Mutex
	plan Plan
	rnd  *rand.Rand
	puts map[string]time.Time // "bucket/key" -> time of its last PUT

	requests, err503, err500, resetsBefore, resetsAfter, slow, truncated, laggedLists, omittedKeys atomic.Int64
}

// errResetAfter makes ModifyResponse hand the response to the error
// handler, which closes the connection without writing it.
var errResetAfter = errors.New("faultproxy: reset after the server replied")

// New starts a proxy in front of target (an http:// S3 endpoint, path-style
// addressing). Injection starts disabled; call Enable.
func New(target string, plan Plan) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: bad target %q", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), ln: ln, puts: map[string]time.Time{}}
	p.SetPlan(plan)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true // pass bodies as the server sent them
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // the client signed its own Host
		},
		Transport:      tr,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() error { return p.srv.Close() }

// Enable starts injecting faults; Disable stops (requests pass unchanged,
// though PUTs are still remembered for ListLag).
func (p *Proxy) Enable()  { p.enabled.Store(true) }
func (p *Proxy) Disable() { p.enabled.Store(false) }

// SetPlan replaces the plan and restarts its random stream from plan.Seed.
func (p *Proxy) SetPlan(plan Plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = plan
	p.rnd = rand.New(rand.NewSource(plan.Seed))
}

// Counts returns the faults injected so far.
func (p *Proxy) Counts() Counts {
	return Counts{
		Requests:     p.requests.Load(),
		Errors503:    p.err503.Load(),
		Errors500:    p.err500.Load(),
		ResetsBefore: p.resetsBefore.Load(),
		ResetsAfter:  p.resetsAfter.Load(),
		Slow:         p.slow.Load(),
		Truncated:    p.truncated.Load(),
		LaggedLists:  p.laggedLists.Load(),
		OmittedKeys:  p.omittedKeys.Load(),
	}
}

type fault int

const (
	none fault = iota
	slowDown
	internalError
	resetBefore
	resetAfter
	slowReply
	truncate
)

type faultKey struct{}

// pick draws the request's fault from the plan.
func (p *Proxy) pick(r *http.Request) (fault, time.Duration) {
	if !p.enabled.Load() {
		return none, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u, half := p.rnd.Float64(), p.rnd.Intn(2) == 0
	pl := p.plan
	switch {
	case u < pl.Errors:
		if half {
			return slowDown, 0
		}
		return internalError, 0
	case u < pl.Errors+pl.Resets:
		if half {
			return resetBefore, 0
		}
		return resetAfter, 0
	case u < pl.Errors+pl.Resets+pl.Slow:
		return slowReply, pl.SlowDelay
	case u < pl.Errors+pl.Resets+pl.Slow+pl.Truncate && isObjectGet(r):
		return truncate, 0
	}
	return none, 0
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	f, delay := p.pick(r)
	switch f {
	case slowDown:
		p.err503.Add(1)
		writeS3Error(w, r, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		return
	case internalError:
		p.err500.Add(1)
		writeS3Error(w, r, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		return
	case resetBefore:
		p.resetsBefore.Add(1)
		hangUp(w)
		return
	case slowReply:
		p.slow.Add(1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if f == resetAfter || f == truncate {
		r = r.WithContext(contextWith(r, f))
	}
	p.rp.ServeHTTP(w, r)
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	r := resp.Request
	ok := resp.StatusCode/100 == 2
	if r.Method == http.MethodPut && ok && r.URL.Query().Get("uploadId") == "" {
		p.mu.Lock()
		p.puts[strings.TrimPrefix(r.URL.Path, "/")] = time.Now()
		p.mu.Unlock()
	}
	switch faultOf(r) {
	case resetAfter:
		p.resetsAfter.Add(1)
		return errResetAfter
	case truncate:
		if ok && resp.ContentLength > 1 {
			p.truncated.Add(1)
			resp.Body = &cutBody{r: resp.Body, left: resp.ContentLength / 2}
		}
	}
	if r.Method == http.MethodGet && ok && r.URL.Query().Get("list-type") == "2" {
		return p.lagListing(resp)
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errResetAfter) {
		hangUp(w)
		return
	}
	// The server is down or the client went away: what a client of S3
	// would see as a gateway error.
	writeS3Error(w, r, http.StatusBadGateway, "BadGateway", err.Error())
}

// lagListing drops from a ListObjectsV2 reply the keys PUT less than
// ListLag ago.
func (p *Proxy) lagListing(resp *http.Response) error {
	p.mu.Lock()
	lag := p.plan.ListLag
	p.mu.Unlock()
	if lag <= 0 || !p.enabled.Load() {
		return nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	bucket := strings.Trim(resp.Request.URL.Path, "/")
	now := time.Now()
	p.mu.Lock()
	out, omitted := filterListing(body, func(key string) bool {
		t, ok := p.puts[bucket+"/"+key]
		return ok && now.Sub(t) < lag
	})
	p.mu.Unlock()
	if omitted > 0 {
		p.laggedLists.Add(1)
		p.omittedKeys.Add(int64(omitted))
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// filterListing removes the <Contents> entries whose key hide reports and
// fixes <KeyCount>. The rest of the document is kept byte for byte.
func filterListing(body []byte, hide func(key string) bool) ([]byte, int) {
	const open, closing = "<Contents>", "</Contents>"
	var out bytes.Buffer
	omitted := 0
	rest := body
	for {
		i := bytes.Index(rest, []byte(open))
		if i < 0 {
			break
		}
		j := bytes.Index(rest[i:], []byte(closing))
		if j < 0 {
			break
		}
		end := i + j + len(closing)
		var c struct {
			Key string `xml:"Key"`
		}
		out.Write(rest[:i])
		if err := xml.Unmarshal(rest[i:end], &c); err == nil && hide(c.Key) {
			omitted++
		} else {
			out.Write(rest[i:end])
		}
		rest = rest[end:]
	}
	out.Write(rest)
	if omitted == 0 {
		return body, 0
	}
	b := out.Bytes()
	if i := bytes.Index(b, []byte("<KeyCount>")); i >= 0 {
		if j := bytes.Index(b[i:], []byte("</KeyCount>")); j >= 0 {
			n, err := strconv.Atoi(string(b[i+len("<KeyCount>") : i+j]))
			if err == nil {
				fixed := append([]byte(nil), b[:i]...)
				fixed = append(fixed, fmt.Sprintf("<KeyCount>%d</KeyCount>", n-omitted)...)
				b = append(fixed, b[i+j+len("</KeyCount>"):]...)
			}
		}
	}
	return b, omitted
}

// isObjectGet: a GET of one object (path-style /bucket/key), not a listing.
func isObjectGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	_, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	return key != "" && !q.Has("list-type") && !q.Has("uploadId") && !q.Has("uploads")
}

func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<Error><Code>" + code + "</Code><Message>")
	_ = xml.EscapeText(&b, []byte(msg))
	b.WriteString("</Message><Resource>")
	_ = xml.EscapeText(&b, []byte(r.URL.Path))
	b.WriteString("</Resource><RequestId>faultproxy</RequestId></Error>")
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// hangUp closes the client's connection without a reply.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST, as a dropped connection shows
	}
	_ = conn.Close()
}

// cutBody yields left bytes of r, then fails: the proxy aborts the reply
// after part of its declared length.
type cutBody struct {
	r    io.ReadCloser
	left int64
}

func (c *cutBody) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.r.Close() }

func contextWith(r *http.Request, f fault) context.Context {
	return context.WithValue(r.Context(), faultKey{}, f)
}

// faultOf is the fault serve chose for a request to be applied after the
// server replied.
func faultOf(r *http.Request) fault {
	f, _ := r.Context().Value(faultKey{}).(fault)
	return f
}
