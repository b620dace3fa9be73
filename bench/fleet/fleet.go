package main

import (
	"math"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The health statuses a target can be flipped to, in the order of fleet.py's STATUSES.
const (
	healthy = iota
	degraded
	unhealthy
)

var statusNames = [...]string{"healthy", "degraded", "unhealthy"}

func parseStatus(s string) (int, bool) {
	for i, name := range statusNames {
		if s == name {
			return i, true
		}
	}
	return 0, false
}

// arrivalsKept is how many read times each target keeps (fleet.py's ARRIVALS_KEPT).
const arrivalsKept = 512

// target is one logical MCP server: its health status, its read log, and
// whether it speaks only the handshake-era protocol.
type target struct {
	tid    int
	status int
	legacy bool
	// A ring of the last arrivalsKept read times (seconds since the epoch).
	arrivals [arrivalsKept]float64
	head     int // where the next arrival goes
	count    int
}

func (t *target) record(at float64) {
	t.arrivals[t.head] = at
	t.head = (t.head + 1) % arrivalsKept
	if t.count < arrivalsKept {
		t.count++
	}
}

// each calls f with the kept arrivals, oldest first.
func (t *target) each(f func(float64)) {
	start := (t.head - t.count + arrivalsKept) % arrivalsKept
	for i := 0; i < t.count; i++ {
		f(t.arrivals[(start+i)%arrivalsKept])
	}
}

// fleet is every target's state, the read counters and the fixed parts of
// the health document, as fleet.py's Fleet.
type fleet struct {
	mu          sync.Mutex
	first       int
	targets     []target
	reads       int64
	connections int64
	clients     map[string]struct{}

	started       time.Time
	memoryLimitMB float64
	environment   string
	region        string
	rssMB         float64
	rssAt         time.Time
	disk          diskFigures
}

type diskFigures struct {
	freeGB, percentageUsed float64
}

func newFleet(first, count int, memoryLimitMB float64, legacy func(int) bool) *fleet {
	f := &fleet{
		first:         first,
		targets:       make([]target, count),
		clients:       make(map[string]struct{}),
		started:       time.Now(),
		memoryLimitMB: memoryLimitMB,
		environment:   "bench",
		region:        "local",
	}
	for i := range f.targets {
		f.targets[i].tid = first + i
		f.targets[i].legacy = legacy(first + i)
	}
	f.disk = diskUsage()
	return f
}

// get is the target numbered tid, or nil. The pointer stays valid: targets never move.
func (f *fleet) get(tid int) *target {
	i := tid - f.first
	if i < 0 || i >= len(f.targets) {
		return nil
	}
	return &f.targets[i]
}

func (f *fleet) flip(tids []int, status int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	flipped := 0
	for _, tid := range tids {
		if t := f.get(tid); t != nil {
			t.status = status
			flipped++
		}
	}
	return flipped
}

func (f *fleet) flipAll(status int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.targets {
		f.targets[i].status = status
	}
	return len(f.targets)
}

func (f *fleet) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.targets {
		t := &f.targets[i]
		t.status = healthy
		t.head, t.count = 0, 0
	}
	f.reads, f.connections = 0, 0
	f.clients = make(map[string]struct{})
}

// read records one read of target t by client (its address and port: a new
// port is a new connection) and appends t's health document to buf, with
// Python's json.dumps separators (", " and ": ") when pretty, else compact
// (Starlette's JSONResponse).
func (f *fleet) read(t *target, client string, buf []byte, pretty bool) []byte {
	now := time.Now()
	f.mu.Lock()
	t.record(epoch(now))
	f.reads++
	// A client that shares its connections among targets must not look like
	// one connection per read.
	if _, seen := f.clients[client]; !seen || client == "" {
		f.connections++
		f.clients[client] = struct{}{}
	}
	status := t.status
	rss := f.rss(now)
	f.mu.Unlock()
	return f.document(buf, t.tid, status, rss, now, pretty)
}

// rss is the process's resident memory in MB, read at most once a second.
// Called with f.mu held.
func (f *fleet) rss(now time.Time) float64 {
	if now.Sub(f.rssAt) >= time.Second {
		f.rssMB, f.rssAt = readRSSMB(), now
	}
	return f.rssMB
}

var dbLatencyMS = [...]float64{healthy: 1.5, degraded: 150.0}

// document appends the guide's HealthCheckResponse for one target, the same
// document as fleet.py's Fleet.document.
func (f *fleet) document(b []byte, tid, status int, rss float64, now time.Time, pretty bool) []byte {
	comma, colon := ",", ":"
	if pretty {
		comma, colon = ", ", ": "
	}
	key := func(b []byte, first bool, name string) []byte {
		if !first {
			b = append(b, comma...)
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"')
		return append(b, colon...)
	}
	str := func(b []byte, s string) []byte { return appendJSONString(b, s) }

	b = append(b, '{')
	b = key(b, true, "status")
	b = str(b, statusNames[status])
	b = key(b, false, "timestamp")
	b = appendTimestamp(b, now)
	b = key(b, false, "database_status")
	switch status {
	case unhealthy:
		b = str(b, "disconnected")
	case degraded:
		b = str(b, "degraded")
	default:
		b = str(b, "connected")
	}
	b = key(b, false, "uptime_seconds")
	b = appendPyFloat(b, round1(now.Sub(f.started).Seconds()))
	b = key(b, false, "connection_pool")
	b = append(b, '{')
	b = key(b, true, "total_connections")
	b = append(b, "10"...)
	b = key(b, false, "active_connections")
	b = append(b, '2')
	b = key(b, false, "idle_connections")
	b = append(b, '8')
	b = key(b, false, "waiting_requests")
	b = append(b, '0')
	b = key(b, false, "pool_utilization")
	b = append(b, "0.2"...)
	b = append(b, '}')

	b = key(b, false, "checks")
	b = append(b, '{')
	b = key(b, true, "database")
	b = append(b, '{')
	if status == unhealthy {
		b = key(b, true, "status")
		b = str(b, "fail")
		b = key(b, false, "message")
		b = str(b, "Database unreachable: OperationalError")
	} else {
		slow := status == degraded
		b = key(b, true, "status")
		if slow {
			b = str(b, "warn")
		} else {
			b = str(b, "pass")
		}
		b = key(b, false, "latency_ms")
		b = appendPyFloat(b, dbLatencyMS[status])
		b = key(b, false, "message")
		if slow {
			b = str(b, "Database responding slowly")
		} else {
			b = str(b, "Database responding normally")
		}
	}
	b = append(b, '}')

	fraction := 0.0
	if f.memoryLimitMB != 0 {
		fraction = rss / f.memoryLimitMB
	}
	memStatus := "pass"
	if fraction > 0.95 {
		memStatus = "fail"
	} else if fraction > 0.80 {
		memStatus = "warn"
	}
	b = key(b, false, "memory")
	b = append(b, '{')
	b = key(b, true, "status")
	b = str(b, memStatus)
	b = key(b, false, "usage_mb")
	b = strconv.AppendInt(b, int64(math.RoundToEven(rss)), 10)
	b = key(b, false, "limit_mb")
	b = strconv.AppendInt(b, int64(math.RoundToEven(f.memoryLimitMB)), 10)
	b = key(b, false, "percentage")
	b = appendPyFloat(b, round1(math.Min(fraction, 1.0)*100))
	b = append(b, '}')

	b = key(b, false, "disk")
	b = append(b, '{')
	b = key(b, true, "status")
	b = str(b, "pass")
	b = key(b, false, "free_gb")
	b = appendPyFloat(b, f.disk.freeGB)
	b = key(b, false, "percentage_used")
	b = appendPyFloat(b, f.disk.percentageUsed)
	b = append(b, '}')
	b = append(b, '}')

	b = key(b, false, "metadata")
	b = append(b, '{')
	b = key(b, true, "version")
	b = str(b, "2.0.0")
	b = key(b, false, "environment")
	b = str(b, f.environment)
	b = key(b, false, "region")
	b = str(b, f.region)
	b = key(b, false, "server")
	b = append(b, `"fleet-target-`...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, '"')
	b = append(b, '}')
	return append(b, '}')
}

// arrivalsJSON is /control/arrivals: {"now": T, "arrivals": {"<i>": [t, ...]}},
// the read times at or after since of every target.
func (f *fleet) arrivalsJSON(since float64) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := make([]byte, 0, 64+len(f.targets)*16)
	b = append(b, `{"now":`...)
	b = appendEpoch(b, epoch(time.Now()))
	b = append(b, `,"arrivals":{`...)
	for i := range f.targets {
		t := &f.targets[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(t.tid), 10)
		b = append(b, `":[`...)
		first := true
		t.each(func(at float64) {
			if at < since {
				return
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendEpoch(b, at)
		})
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

func (f *fleet) counters() (reads, connections int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads, f.connections
}

// -- numbers as Python writes them ------------------------------------------------

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func appendEpoch(b []byte, at float64) []byte {
	return strconv.AppendFloat(b, at, 'f', -1, 64)
}

// round1 is Python's round(x, 1) for the figures here.
func round1(x float64) float64 { return math.RoundToEven(x*10) / 10 }

// appendPyFloat appends x as Python's repr of a float in the fixed range: the
// shortest digits that read back as x, and ".0" when it is whole.
func appendPyFloat(b []byte, x float64) []byte {
	start := len(b)
	b = strconv.AppendFloat(b, x, 'f', -1, 64)
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, ".0"...)
}

// appendTimestamp appends datetime.now(UTC).isoformat() with "Z" for "+00:00", quoted.
func appendTimestamp(b []byte, now time.Time) []byte {
	now = now.UTC()
	b = append(b, '"')
	if now.Nanosecond()/1000 == 0 {
		b = now.AppendFormat(b, "2006-01-02T15:04:05")
	} else {
		b = now.AppendFormat(b, "2006-01-02T15:04:05.000000")
	}
	return append(b, `Z"`...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, ASCII only (json.dumps' ensure_ascii).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20 || (r >= 0x7f && r < 0x10000):
			b = append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		case r >= 0x10000:
			r -= 0x10000
			hi, lo := 0xd800+(r>>10), 0xdc00+(r&0x3ff)
			b = append(b, '\\', 'u', hexDigits[hi>>12&0xf], hexDigits[hi>>8&0xf], hexDigits[hi>>4&0xf], hexDigits[hi&0xf])
			b = append(b, '\\', 'u', hexDigits[lo>>12&0xf], hexDigits[lo>>8&0xf], hexDigits[lo>>4&0xf], hexDigits[lo&0xf])
		default:
			b = append(b, byte(r))
		}
	}
	return append(b, '"')
}

// appendJSONBytesAsString appends raw (JSON text, ASCII) as a JSON string.
func appendJSONBytesAsString(b, raw []byte) []byte {
	b = append(b, '"')
	for _, c := range raw {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// -- the process and its disk ----------------------------------------------------

// readRSSMB is VmRSS of this process in MB (0 where /proc is not there).
func readRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	const field = "VmRSS:"
	for i := 0; i+len(field) <= len(data); i++ {
		if (i == 0 || data[i-1] == '\n') && string(data[i:i+len(field)]) == field {
			j := i + len(field)
			for j < len(data) && (data[j] == ' ' || data[j] == '\t') {
				j++
			}
			k := j
			for k < len(data) && data[k] >= '0' && data[k] <= '9' {
				k++
			}
			kb, err := strconv.ParseInt(string(data[j:k]), 10, 64)
			if err != nil {
				return 0
			}
			return float64(kb) / 1024
		}
	}
	return 0
}

// diskUsage is shutil.disk_usage(os.getcwd()) as fleet.py reports it.
func diskUsage() diskFigures {
	wd, err := os.Getwd()
	if err != nil {
		wd = "."
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(wd, &st); err != nil {
		return diskFigures{}
	}
	size := uint64(st.Frsize)
	total := st.Blocks * size
	free := st.Bavail * size
	used := (st.Blocks - st.Bfree) * size
	figures := diskFigures{freeGB: round1(float64(free) / (1 << 30))}
	if total > 0 {
		figures.percentageUsed = round1(float64(used) / float64(total) * 100)
	}
	return figures
}
