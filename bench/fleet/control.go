package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// The control API, as fleet.py's.

func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header()["Allow"] = []string{method}
	w.WriteHeader(http.StatusMethodNotAllowed)
	return false
}

func jsonError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, append(appendJSONString([]byte(`{"error":`), message), '}'), "")
}

func statusError(status string) string {
	return "status must be one of healthy, degraded, unhealthy, not " + pyRepr(status)
}

// pyRepr is Python's repr of a plain string, near enough for an error message.
func pyRepr(s string) string {
	q := strconv.Quote(s)
	return "'" + q[1:len(q)-1] + "'"
}

// plainHealth is GET /t/<i>/health/status: the document over plain HTTP.
func (s *server) plainHealth(w http.ResponseWriter, r *http.Request, t *target) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	doc := s.fleet.read(t, r.RemoteAddr, getBuffer(), false)
	writeJSON(w, http.StatusOK, doc, "")
	putBuffer(doc)
}

// flipOne is POST /t/<i>/flip?status=S (default unhealthy).
func (s *server) flipOne(w http.ResponseWriter, r *http.Request, t *target) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	name := r.URL.Query().Get("status")
	if _, given := r.URL.Query()["status"]; !given {
		name = "unhealthy"
	}
	status, ok := parseStatus(name)
	if !ok {
		jsonError(w, http.StatusBadRequest, statusError(name))
		return
	}
	s.fleet.flip([]int{t.tid}, status)
	b := []byte(`{"target":`)
	b = strconv.AppendInt(b, int64(t.tid), 10)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"at":`...)
	b = appendEpoch(b, epoch(time.Now()))
	writeJSON(w, http.StatusOK, append(b, '}'), "")
}

// controlFlip is POST /control/flip {"targets": [i, ...] | "all", "status": S}.
func (s *server) controlFlip(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var request struct {
		Targets json.RawMessage `json:"targets"`
		Status  *string         `json:"status"`
	}
	if err := json.Unmarshal(body, &request); err != nil {
		jsonError(w, http.StatusBadRequest, "the body is not a JSON object: "+err.Error())
		return
	}
	name := "unhealthy"
	if request.Status != nil {
		name = *request.Status
	}
	status, ok := parseStatus(name)
	if !ok {
		jsonError(w, http.StatusBadRequest, statusError(name))
		return
	}
	var flipped int
	var all string
	if json.Unmarshal(request.Targets, &all) == nil && all == "all" {
		flipped = s.fleet.flipAll(status)
	} else {
		var tids []int
		if len(request.Targets) > 0 {
			if err := json.Unmarshal(request.Targets, &tids); err != nil {
				jsonError(w, http.StatusBadRequest, `targets must be a list of numbers or "all"`)
				return
			}
		}
		flipped = s.fleet.flip(tids, status)
	}
	b := []byte(`{"flipped":`)
	b = strconv.AppendInt(b, int64(flipped), 10)
	b = append(b, `,"at":`...)
	b = appendEpoch(b, epoch(time.Now()))
	writeJSON(w, http.StatusOK, append(b, '}'), "")
}

// controlArrivals is GET /control/arrivals?since=T.
func (s *server) controlArrivals(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	since := 0.0
	if text := r.URL.Query().Get("since"); text != "" {
		var err error
		if since, err = strconv.ParseFloat(text, 64); err != nil {
			jsonError(w, http.StatusBadRequest, "since must be a number")
			return
		}
	}
	writeJSON(w, http.StatusOK, s.fleet.arrivalsJSON(since), "")
}

// controlReset is POST /control/reset: every target healthy, the log and counters cleared.
func (s *server) controlReset(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	s.fleet.reset()
	b := []byte(`{"targets":`)
	b = strconv.AppendInt(b, int64(len(s.fleet.targets)), 10)
	writeJSON(w, http.StatusOK, append(b, '}'), "")
}

// controlStats is GET /control/stats: fleet.py's three figures, and the
// sessions held (handshake sessions on Streamable HTTP, SSE streams).
func (s *server) controlStats(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	reads, connections := s.fleet.counters()
	b := []byte(`{"targets":`)
	b = strconv.AppendInt(b, int64(len(s.fleet.targets)), 10)
	b = append(b, `,"reads":`...)
	b = strconv.AppendInt(b, reads, 10)
	b = append(b, `,"connections":`...)
	b = strconv.AppendInt(b, connections, 10)
	b = append(b, `,"sessions":`...)
	b = strconv.AppendInt(b, int64(s.sessions.count()), 10)
	b = append(b, `,"sse_sessions":`...)
	b = strconv.AppendInt(b, int64(s.sse.count()), 10)
	writeJSON(w, http.StatusOK, append(b, '}'), "")
}
