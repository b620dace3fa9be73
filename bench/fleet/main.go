// Command bench-fleet serves many logical MCP health targets on one port, at
// a small fraction of the CPU of the Python fleet (examples/sample_mcp/fleet.py),
// with the same control API, so that a benchmark measures the operator and
// not its targets.
//
//	bench-fleet --targets 1000 --first 0 --port 18000
//
//	POST   /t/<i>/mcp              MCP over Streamable HTTP: 2026-07-28 (server/discover,
//	                               stateless requests) and the initialize handshake
//	                               (Mcp-Session-Id sessions, ping, DELETE ends one)
//	GET    /t/<i>/mcp              a handshake session's stream (silent; open until it ends)
//	DELETE /t/<i>/mcp              end a handshake session
//	GET    /t/<i>/sse              MCP over the legacy SSE transport: an endpoint event,
//	POST   /t/<i>/messages/?session_id=S   then messages, answered on the stream
//	GET    /t/<i>/health/status    the health document over plain HTTP
//	POST   /t/<i>/flip?status=S    set one target's status (healthy|degraded|unhealthy)
//	POST   /control/flip           {"targets": [i, ...] | "all", "status": S}
//	GET    /control/arrivals?since=T   {"now": T1, "arrivals": {"<i>": [t, ...]}}
//	POST   /control/reset          every target healthy, read log cleared
//	GET    /control/stats          {"targets": N, "reads": R, "connections": C, ...}
//
// Served: server/discover, resources/list, resources/templates/list,
// resources/read (health://status), tools/list and tools/call (one tool,
// set_status), ping and initialize (handshake era). A target in legacy mode
// (--legacy, --legacy-targets) answers server/discover with -32601, as a
// server of the handshake era does, so clients fall back to initialize.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type server struct {
	fleet    *fleet
	id       identity
	answers  answerMode
	sessions sessions
	sse      sseSessions
	memo     decodeMemo
	stopping chan struct{}
}

func main() {
	targets := flag.Int("targets", 100, "how many targets")
	first := flag.Int("first", 0, "number of the first target")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 18000, "port to listen on (0: any; the port is printed)")
	memoryLimit := flag.Float64("memory-limit-mb", 2048, "the memory limit the health document reports against")
	jsonResponse := flag.Bool("json-response", false, "answer every MCP POST with application/json")
	eventStream := flag.Bool("event-stream", false, "answer every MCP POST with an event stream, 2026-07-28 requests too")
	legacy := flag.Bool("legacy", false, "every target speaks only the handshake era (server/discover: method not found)")
	legacyTargets := flag.String("legacy-targets", "", "these targets only, e.g. 0-99,150: handshake era")
	sessionIdle := flag.Duration("session-idle", 30*time.Minute, "end handshake sessions unused this long")
	name := flag.String("name", "bench-fleet", "serverInfo.name")
	procs := flag.Int("procs", 1, "GOMAXPROCS (measured at 2,000 reads/s: 1 costs ~15% less CPU per read than 2; idle Ps spin looking for work)")
	gcPercent := flag.Int("gc-percent", 100, "GOGC (measured: 400 costs twice the memory and saves no CPU)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until the fleet stops")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	debug.SetGCPercent(*gcPercent)
	if *cpuProfile != "" {
		out, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err.Error())
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			fail(err.Error())
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = out.Close()
		}()
	}

	if *jsonResponse && *eventStream {
		fail("--json-response and --event-stream exclude each other")
	}
	if *targets < 0 {
		fail("--targets must be 0 or more")
	}
	isLegacy, err := legacySet(*legacy, *legacyTargets)
	if err != nil {
		fail(err.Error())
	}
	s := &server{
		fleet:    newFleet(*first, *targets, *memoryLimit, isLegacy),
		id:       newIdentity(*name, "2.0.0", "Many health targets in one process."),
		sessions: sessions{m: make(map[string]*session)},
		sse:      sseSessions{m: make(map[string]*sseSession)},
		memo:     decodeMemo{m: make(map[string]*decoded)},
		stopping: make(chan struct{}),
	}
	switch {
	case *jsonResponse:
		s.answers = answersJSON
	case *eventStream:
		s.answers = answersEventStream
	}

	listener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fail(err.Error())
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		// Many keep-alive connections, each used every few seconds (as fleet.py's uvicorn).
		IdleTimeout: 600 * time.Second,
		ErrorLog:    nil,
	}
	go func() {
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for range tick.C {
			s.sessions.sweep(*sessionIdle)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	shutdown := make(chan struct{})
	go func() {
		defer close(shutdown)
		<-stop
		close(s.stopping)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Fprintf(os.Stderr, "bench-fleet: %d targets from %d on http://%s\n", *targets, *first, listener.Addr())
	if err := srv.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fail(err.Error())
	}
	<-shutdown
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "bench-fleet:", message)
	os.Exit(2)
}

// legacySet is which targets speak only the handshake era.
func legacySet(all bool, spec string) (func(int) bool, error) {
	if all {
		return func(int) bool { return true }, nil
	}
	type span struct{ lo, hi int }
	var spans []span
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("--legacy-targets: %q is not a number or a range", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("--legacy-targets: %q is not a range", part)
			}
		}
		spans = append(spans, span{a, b})
	}
	return func(tid int) bool {
		for _, sp := range spans {
			if sp.lo <= tid && tid <= sp.hi {
				return true
			}
		}
		return false
	}, nil
}

// ServeHTTP routes by hand: /t/<i>/<what> and /control/<what>.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/t/"); ok {
		digits, what, _ := strings.Cut(rest, "/")
		tid, err := strconv.Atoi(digits)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		t := s.fleet.get(tid)
		switch what {
		case "mcp", "sse", "messages", "messages/", "health/status", "flip":
		default:
			http.NotFound(w, r)
			return
		}
		if t == nil {
			writeJSON(w, http.StatusNotFound, []byte(`{"error":"no such target"}`), "")
			return
		}
		switch what {
		case "mcp":
			s.serveMCP(w, r, t)
		case "sse":
			s.serveSSE(w, r, t)
		case "messages", "messages/":
			s.serveMessages(w, r, t)
		case "health/status":
			s.plainHealth(w, r, t)
		case "flip":
			s.flipOne(w, r, t)
		}
		return
	}
	switch path {
	case "/control/flip":
		s.controlFlip(w, r)
	case "/control/arrivals":
		s.controlArrivals(w, r)
	case "/control/reset":
		s.controlReset(w, r)
	case "/control/stats":
		s.controlStats(w, r)
	default:
		http.NotFound(w, r)
	}
}
