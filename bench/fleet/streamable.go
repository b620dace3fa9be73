package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// answerMode says how POSTs are answered on Streamable HTTP.
type answerMode int

const (
	// As the official SDK's server does by default: 2026-07-28 answers are
	// JSON, handshake-era answers are event streams.
	answersSDK answerMode = iota
	// Every answer is JSON (fleet.py --json-response).
	answersJSON
	// Every result is an event stream, 2026-07-28 answers too (as the SDK
	// answers a request whose handler runs past its deferral window).
	answersEventStream
)

// maxBody bounds a request body: a probe's is ~300 bytes.
const maxBody = 1 << 20

// Header values, shared by every response (net/http only reads them).
var (
	hdrJSON        = []string{"application/json"}
	hdrEvents      = []string{"text/event-stream"}
	hdrNoCache     = []string{"no-cache, no-transform"}
	hdrNo          = []string{"no"}
	hdrTextPlain   = []string{"text/plain; charset=utf-8"}
	hdrAllowPost   = []string{"POST"}
	hdrAllowStream = []string{"GET, POST, DELETE"}
)

// session is a handshake-era Streamable HTTP session (Mcp-Session-Id).
type session struct {
	id          string
	tid         int
	version     string
	initialized bool
	lastUsed    time.Time
	stream      bool          // its GET stream is open
	done        chan struct{} // closed when the session ends
}

type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func (ss *sessions) create(tid int, version string) *session {
	s := &session{id: newID(), tid: tid, version: version, lastUsed: time.Now(), done: make(chan struct{})}
	ss.mu.Lock()
	ss.m[s.id] = s
	ss.mu.Unlock()
	return s
}

// get is the session id of target tid, marked used now; nil if there is none.
func (ss *sessions) get(id string, tid int) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[id]
	if s == nil || s.tid != tid {
		return nil
	}
	s.lastUsed = time.Now()
	return s
}

func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m[s.id] == s {
		delete(ss.m, s.id)
		close(s.done)
	}
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// sweep ends sessions unused for idle that hold no open stream.
func (ss *sessions) sweep(idle time.Duration) {
	cutoff := time.Now().Add(-idle)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, s := range ss.m {
		if !s.stream && s.lastUsed.Before(cutoff) {
			delete(ss.m, id)
			close(s.done)
		}
	}
}

func (ss *sessions) clear() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, s := range ss.m {
		delete(ss.m, id)
		close(s.done)
	}
}

func newID() string {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(raw[:])
}

// serveMCP is /t/<i>/mcp: MCP over Streamable HTTP for one target.
func (s *server) serveMCP(w http.ResponseWriter, r *http.Request, t *target) {
	switch r.Method {
	case http.MethodPost:
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if r.Header.Get("Mcp-Protocol-Version") == modernVersion && !t.legacy {
			s.postModern(w, r, t, body)
		} else {
			s.postLegacy(w, r, t, body)
		}
		putBuffer(body) // decoded: nothing refers to it any more
	case http.MethodGet:
		if r.Header.Get("Mcp-Protocol-Version") == modernVersion && !t.legacy {
			w.Header()["Allow"] = hdrAllowPost
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		s.getStream(w, r, t)
	case http.MethodDelete:
		s.deleteSession(w, r, t)
	default:
		w.Header()["Allow"] = hdrAllowStream
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// postModern answers one 2026-07-28 POST: stateless, one request, one answer.
func (s *server) postModern(w http.ResponseWriter, r *http.Request, t *target, body []byte) {
	hasJSON, hasSSE := acceptsOf(r)
	if !hasJSON || (s.answers != answersJSON && !hasSSE) {
		w.WriteHeader(http.StatusNotAcceptable)
		return
	}
	m, p, badParams, ok := s.memo.decode(body)
	if !ok {
		s.writeError(w, 400, nil, &rpcError{codeParseError, "Parse error", nil}, "")
		return
	}
	if m.isNotification() {
		// Acknowledged and dropped, as the SDK does.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if m.JSONRPC != "2.0" || !m.isRequest() {
		s.writeError(w, 400, nil, &rpcError{codeInvalidRequest, "Invalid request body", nil}, "")
		return
	}
	for _, name := range [...]string{"Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name"} {
		if len(r.Header[name]) > 1 {
			s.writeModernError(w, m.ID, &rpcError{codeHeaderMismatch, strings.ToLower(name) + " header appears more than once", nil})
			return
		}
	}
	if badParams {
		s.writeModernError(w, m.ID, &rpcError{codeInvalidParams, "Invalid params", nil})
		return
	}
	c := call{t: t, modern: true, client: r.RemoteAddr, method: *m.Method, params: p}
	header := func(name string) (string, bool) {
		values := r.Header[name]
		if len(values) == 0 {
			return "", false
		}
		return values[0], true
	}
	if err := envelope(&m, &c.params, header); err != nil {
		s.writeModernError(w, m.ID, err)
		return
	}
	buf := getBuffer()
	defer putBuffer(buf)
	result, err := s.dispatch(&c, buf)
	if err != nil {
		s.writeModernError(w, m.ID, err)
		return
	}
	out := appendResponse(getBuffer(), m.ID, result, nil)
	if s.answers == answersEventStream {
		writeEvent(w, out, "")
	} else {
		writeJSON(w, 200, out, "")
	}
	putBuffer(out)
}

func (s *server) writeModernError(w http.ResponseWriter, id json.RawMessage, err *rpcError) {
	s.writeError(w, httpStatusOf(err.code), id, err, "")
}

func (s *server) writeError(w http.ResponseWriter, status int, id json.RawMessage, err *rpcError, sessionID string) {
	out := appendResponse(getBuffer(), id, nil, err)
	writeJSON(w, status, out, sessionID)
	putBuffer(out)
}

// postLegacy answers a handshake-era POST: initialize makes a session, every
// other message names it (Mcp-Session-Id).
func (s *server) postLegacy(w http.ResponseWriter, r *http.Request, t *target, body []byte) {
	hasJSON, hasSSE := acceptsOf(r)
	if !hasJSON || (s.answers != answersJSON && !hasSSE) {
		s.writeError(w, 406, nil, &rpcError{codeInvalidRequest,
			"Not Acceptable: Client must accept both application/json and text/event-stream", nil}, "")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
		s.writeError(w, 415, nil, &rpcError{codeInvalidRequest, "Unsupported Media Type: Content-Type must be application/json", nil}, "")
		return
	}
	m, p, badParams, ok := s.memo.decode(body)
	if !ok {
		s.writeError(w, 400, nil, &rpcError{codeParseError, "Parse error", nil}, "")
		return
	}
	if m.JSONRPC != "2.0" {
		s.writeError(w, 400, nil, &rpcError{codeInvalidRequest, "Validation error: not a JSON-RPC 2.0 message", nil}, "")
		return
	}
	method := ""
	if m.Method != nil {
		method = *m.Method
	}
	if badParams && m.isRequest() {
		s.writeError(w, 200, m.ID, &rpcError{codeInvalidParams, "Invalid params", nil}, "")
		return
	}
	if method == "server/discover" && m.isRequest() && t.legacy {
		// What a server of the handshake era says: no such method. The
		// client falls back to initialize.
		s.writeError(w, 200, m.ID, methodNotFound(method), "")
		return
	}
	if method == "initialize" && m.isRequest() {
		sess := s.sessions.create(t.tid, negotiate(p.ProtocolVersion))
		s.answerLegacy(w, m.ID, s.initializeResult(getBuffer(), sess.version), nil, sess.id)
		return
	}
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		s.writeError(w, 400, nil, &rpcError{codeInvalidRequest, "Bad Request: Missing session ID", nil}, "")
		return
	}
	sess := s.sessions.get(id, t.tid)
	if sess == nil {
		s.writeError(w, 404, nil, &rpcError{codeInvalidRequest, "Session not found", nil}, "")
		return
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && !isHandshakeVersion(v) {
		s.writeError(w, 400, nil, &rpcError{codeInvalidRequest, "Bad Request: Unsupported protocol version: " + v +
			". Supported versions: " + strings.Join(handshakeVersions, ", "), nil}, sess.id)
		return
	}
	if !m.isRequest() {
		if method == "notifications/initialized" {
			s.sessions.mu.Lock()
			sess.initialized = true
			s.sessions.mu.Unlock()
		}
		w.Header()["Content-Type"] = hdrJSON
		w.Header()["Mcp-Session-Id"] = []string{sess.id}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	c := call{t: t, modern: false, client: r.RemoteAddr, method: method, params: p}
	buf := getBuffer()
	result, err := s.dispatch(&c, buf)
	s.answerLegacy(w, m.ID, result, err, sess.id)
}

// answerLegacy writes a handshake-era answer (JSON or one event) and puts result back in the pool.
func (s *server) answerLegacy(w http.ResponseWriter, id json.RawMessage, result []byte, err *rpcError, sessionID string) {
	out := appendResponse(getBuffer(), id, result, err)
	if s.answers == answersJSON {
		writeJSON(w, 200, out, sessionID)
	} else {
		writeEvent(w, out, sessionID)
	}
	putBuffer(out)
	if result != nil {
		putBuffer(result)
	}
}

// getStream is a session's GET: the stream of the server's own messages,
// open (and silent) until the session or the connection ends.
func (s *server) getStream(w http.ResponseWriter, r *http.Request, t *target) {
	if _, hasSSE := acceptsOf(r); !hasSSE {
		s.writeError(w, 406, nil, &rpcError{codeInvalidRequest, "Not Acceptable: Client must accept text/event-stream", nil}, "")
		return
	}
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		s.writeError(w, 400, nil, &rpcError{codeInvalidRequest, "Bad Request: Missing session ID", nil}, "")
		return
	}
	sess := s.sessions.get(id, t.tid)
	if sess == nil {
		s.writeError(w, 404, nil, &rpcError{codeInvalidRequest, "Session not found", nil}, "")
		return
	}
	s.sessions.mu.Lock()
	busy := sess.stream
	sess.stream = true
	s.sessions.mu.Unlock()
	if busy {
		s.writeError(w, 409, nil, &rpcError{codeInvalidRequest, "Conflict: Only one SSE stream is allowed per session", nil}, sess.id)
		return
	}
	defer func() {
		s.sessions.mu.Lock()
		sess.stream = false
		sess.lastUsed = time.Now()
		s.sessions.mu.Unlock()
	}()
	h := w.Header()
	h["Content-Type"] = hdrEvents
	h["Cache-Control"] = hdrNoCache
	h["X-Accel-Buffering"] = hdrNo
	h["Mcp-Session-Id"] = []string{sess.id}
	w.WriteHeader(http.StatusOK)
	if flusher, ok := w.(http.Flusher); ok {
		flusher.Flush()
	}
	select {
	case <-r.Context().Done():
	case <-sess.done:
	case <-s.stopping:
	}
}

// deleteSession is a session's DELETE: the client ends it.
func (s *server) deleteSession(w http.ResponseWriter, r *http.Request, t *target) {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		s.writeError(w, 400, nil, &rpcError{codeInvalidRequest, "Bad Request: Missing session ID", nil}, "")
		return
	}
	sess := s.sessions.get(id, t.tid)
	if sess == nil {
		s.writeError(w, 404, nil, &rpcError{codeInvalidRequest, "Session not found", nil}, "")
		return
	}
	s.sessions.end(sess)
	w.Header()["Content-Type"] = hdrJSON
	w.Header()["Mcp-Session-Id"] = []string{sess.id}
	w.Header()["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// acceptsOf is the SDK's check_accept_headers: (has JSON, has event stream), wildcards counted.
func acceptsOf(r *http.Request) (hasJSON, hasSSE bool) {
	for _, value := range r.Header["Accept"] {
		for _, part := range strings.Split(value, ",") {
			media := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
			switch media {
			case "*/*":
				hasJSON, hasSSE = true, true
			case "application/json", "application/*":
				hasJSON = true
			case "text/event-stream", "text/*":
				hasSSE = true
			}
		}
	}
	return hasJSON, hasSSE
}

// readBody is the request's body, in a buffer of the pool when it says its
// length (the caller may putBuffer it once done with it).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var body []byte
	var err error
	if n := r.ContentLength; n >= 0 && n <= maxBody {
		body = getBuffer()
		if int64(cap(body)) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err == nil && len(body) > maxBody {
			http.Error(w, "Payload Too Large", http.StatusRequestEntityTooLarge)
			return nil, false
		}
	}
	if err != nil {
		http.Error(w, "Bad Request: unreadable body", http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

func writeJSON(w http.ResponseWriter, status int, body []byte, sessionID string) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	if sessionID != "" {
		h["Mcp-Session-Id"] = []string{sessionID}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeEvent answers with an event stream of one message event, then ends it.
func writeEvent(w http.ResponseWriter, body []byte, sessionID string) {
	h := w.Header()
	h["Content-Type"] = hdrEvents
	h["Cache-Control"] = hdrNoCache
	h["X-Accel-Buffering"] = hdrNo
	if sessionID != "" {
		h["Mcp-Session-Id"] = []string{sessionID}
	}
	out := append(getBuffer(), "event: message\r\ndata: "...)
	out = append(out, body...)
	out = append(out, "\r\n\r\n"...)
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	putBuffer(out)
}

// -- buffers -----------------------------------------------------------------------

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuffer() []byte { return (*(buffers.Get().(*[]byte)))[:0] }

func putBuffer(b []byte) {
	if cap(b) > 1<<16 {
		return
	}
	buffers.Put(&b)
}
