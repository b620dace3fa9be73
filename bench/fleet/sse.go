package main

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The legacy SSE transport: GET /t/<i>/sse opens an event stream whose first
// event (endpoint) names the URL to POST messages to; each POST is answered
// 202 and its answer is sent as a message event on the stream.

// ssePing is how often an idle stream carries a comment, as sse-starlette's.
const ssePing = 15 * time.Second

type sseSession struct {
	id   string
	tid  int
	out  chan []byte   // events for the stream
	done chan struct{} // closed when the stream ends
	// The handshake's version once initialize is answered; "" before
	// (a 2026-07-28 client never sends initialize).
	mu      sync.Mutex
	version string
}

type sseSessions struct {
	mu sync.Mutex
	m  map[string]*sseSession
}

func (ss *sseSessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// serveSSE is GET /t/<i>/sse: one session, as long as the stream lasts.
func (s *server) serveSSE(w http.ResponseWriter, r *http.Request, t *target) {
	if r.Method != http.MethodGet {
		w.Header()["Allow"] = []string{"GET"}
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	sess := &sseSession{id: newID(), tid: t.tid, out: make(chan []byte, 64), done: make(chan struct{})}
	s.sse.mu.Lock()
	s.sse.m[sess.id] = sess
	s.sse.mu.Unlock()
	defer func() {
		s.sse.mu.Lock()
		delete(s.sse.m, sess.id)
		s.sse.mu.Unlock()
		close(sess.done)
	}()

	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-store"}
	h["X-Accel-Buffering"] = hdrNo
	w.WriteHeader(http.StatusOK)
	endpoint := "event: endpoint\r\ndata: /t/" + strconv.Itoa(t.tid) + "/messages/?session_id=" + sess.id + "\r\n\r\n"
	if _, err := w.Write([]byte(endpoint)); err != nil {
		return
	}
	flusher.Flush()
	ping := time.NewTicker(ssePing)
	defer ping.Stop()
	for {
		select {
		case event := <-sess.out:
			_, err := w.Write(event)
			putBuffer(event)
			if err != nil {
				return
			}
			// Everything queued goes out with one flush.
			for more := true; more; {
				select {
				case event = <-sess.out:
					_, err = w.Write(event)
					putBuffer(event)
					if err != nil {
						return
					}
				default:
					more = false
				}
			}
			flusher.Flush()
		case now := <-ping.C:
			comment := ": ping - " + now.UTC().Format("2006-01-02 15:04:05.000000+00:00") + "\r\n\r\n"
			if _, err := w.Write([]byte(comment)); err != nil {
				return
			}
			flusher.Flush()
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		}
	}
}

// serveMessages is POST /t/<i>/messages/?session_id=X: one message of a session.
func (s *server) serveMessages(w http.ResponseWriter, r *http.Request, t *target) {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = hdrAllowPost
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	id := r.URL.Query().Get("session_id")
	if id == "" {
		http.Error(w, "session_id is required", http.StatusBadRequest)
		return
	}
	if raw, err := hex.DecodeString(id); err != nil || len(raw) != 16 {
		http.Error(w, "Invalid session ID", http.StatusBadRequest)
		return
	}
	s.sse.mu.Lock()
	sess := s.sse.m[id]
	s.sse.mu.Unlock()
	if sess == nil || sess.tid != t.tid {
		http.Error(w, "Could not find session", http.StatusNotFound)
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	m, p, badParams, ok := s.memo.decode(body)
	putBuffer(body)
	if !ok || m.JSONRPC != "2.0" {
		http.Error(w, "Could not parse message", http.StatusBadRequest)
		return
	}
	if answer := s.sseAnswer(sess, t, &m, p, badParams, r.RemoteAddr); answer != nil {
		event := append(getBuffer(), "event: message\r\ndata: "...)
		event = append(event, answer...)
		event = append(event, "\r\n\r\n"...)
		putBuffer(answer)
		select {
		case sess.out <- event:
		case <-sess.done:
		case <-time.After(5 * time.Second):
		}
	}
	w.Header()["Content-Type"] = hdrTextPlain
	w.Header()["Content-Length"] = []string{"8"}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("Accepted"))
}

// sseAnswer is the JSON-RPC answer to m on the stream, or nil (a notification).
//
// The era is the session's: a 2026-07-28 client sends server/discover and
// then requests carrying the envelope (no headers to check on this
// transport); a handshake-era client sends initialize first.
func (s *server) sseAnswer(sess *sseSession, t *target, m *message, p params, badParams bool, client string) []byte {
	method := ""
	if m.Method != nil {
		method = *m.Method
	}
	sess.mu.Lock()
	version := sess.version
	if method == "initialize" && m.isRequest() && !badParams {
		version = negotiate(p.ProtocolVersion)
		sess.version = version
	}
	sess.mu.Unlock()
	if !m.isRequest() {
		return nil // notifications/initialized and the like: nothing to answer
	}
	if badParams {
		return appendResponse(getBuffer(), m.ID, nil, &rpcError{codeInvalidParams, "Invalid params", nil})
	}
	if method == "initialize" {
		result := s.initializeResult(getBuffer(), version)
		out := appendResponse(getBuffer(), m.ID, result, nil)
		putBuffer(result)
		return out
	}
	c := call{t: t, client: client, method: method, params: p}
	switch {
	case version == "" && !t.legacy:
		c.modern = true
		if err := envelope(m, &p, nil); err != nil {
			return appendResponse(getBuffer(), m.ID, nil, err)
		}
	case version == "" && method != "ping" && method != "server/discover":
		return appendResponse(getBuffer(), m.ID, nil,
			&rpcError{codeInvalidRequest, "Received request before initialization was complete", nil})
	}
	result, err := s.dispatch(&c, getBuffer())
	out := appendResponse(getBuffer(), m.ID, result, err)
	if result != nil {
		putBuffer(result)
	}
	return out
}
