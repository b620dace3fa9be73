package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPyFloatIsPythonsRepr(t *testing.T) {
	for x, want := range map[float64]string{150: "150.0", 1.5: "1.5", 0.2: "0.2", 69.1: "69.1", 0: "0.0", 3.8: "3.8"} {
		if got := string(appendPyFloat(nil, x)); got != want {
			t.Errorf("appendPyFloat(%v) = %q, want %q", x, got, want)
		}
	}
}

func TestJSONStringEscapesAsJSONDumps(t *testing.T) {
	got := string(appendJSONString(nil, "a\"b\\c\n\u00e9\U0001F600"))
	want := `"a\"b\\c\n\u00e9\ud83d\ude00"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDocumentIsJSONInFleetPysOrder(t *testing.T) {
	f := newFleet(0, 1, 2048, func(int) bool { return false })
	for status, name := range statusNames {
		doc := f.document(nil, 0, status, 100, time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), true)
		var parsed map[string]any
		if err := json.Unmarshal(doc, &parsed); err != nil {
			t.Fatalf("%s: %v: %s", name, err, doc)
		}
		if parsed["status"] != name {
			t.Errorf("status %v, want %s", parsed["status"], name)
		}
		text := string(doc)
		if !strings.HasPrefix(text, `{"status": "`+name+`", "timestamp": "2026-01-02T03:04:05.000006Z", "database_status": `) {
			t.Errorf("unexpected start: %s", text)
		}
		if !strings.HasSuffix(text, `"metadata": {"version": "2.0.0", "environment": "bench", "region": "local", "server": "fleet-target-0"}}`) {
			t.Errorf("unexpected end: %s", text)
		}
	}
}

func TestMemoDecodesAsAFullDecode(t *testing.T) {
	dm := decodeMemo{m: make(map[string]*decoded)}
	body := func(id string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"resources/read","params":{"uri":"health://status","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
	}
	for _, id := range []string{"1", "2", "12345"} {
		m, p, bad, ok := dm.decode(body(id))
		if !ok || bad || string(m.ID) != id || *m.Method != "resources/read" || p.URI != "health://status" {
			t.Fatalf("id %s: %+v %+v %v %v", id, m, p, bad, ok)
		}
		if v, _ := jsonString(p.Meta.ProtocolVersion); v != "2026-07-28" {
			t.Fatalf("version %q", v)
		}
	}
	if len(dm.m) != 1 {
		t.Errorf("%d tails remembered, want 1", len(dm.m))
	}
	// A repeated id: the last one counts, as in a full decode, and nothing is remembered.
	m, _, _, ok := dm.decode([]byte(`{"jsonrpc":"2.0","id":7,"method":"ping","id":8}`))
	if !ok || string(m.ID) != "8" {
		t.Errorf("repeated id decoded as %s", m.ID)
	}
	m, _, _, _ = dm.decode([]byte(`{"jsonrpc":"2.0","id":9,"method":"ping","id":8}`))
	if string(m.ID) != "8" {
		t.Errorf("repeated id decoded as %s the second time", m.ID)
	}
	if _, _, bad, ok := dm.decode([]byte(`{"jsonrpc":"2.0","id":3,"method":"x","params":{"_meta":5}}`)); !ok || !bad {
		t.Errorf("a _meta that is no object: bad %v ok %v", bad, ok)
	}
	if _, _, _, ok := dm.decode([]byte(`{"jsonrpc":"2.0","id":01,"method":"x"}`)); ok {
		t.Error("a number with a leading zero decoded")
	}
}

func TestHeaderValuesDecodeAsTheSDKEncodes(t *testing.T) {
	if v, ok := decodeHeaderValue("health://status"); !ok || v != "health://status" {
		t.Errorf("plain: %q %v", v, ok)
	}
	if v, ok := decodeHeaderValue("=?base64?IGxlYWRpbmc=?="); !ok || v != " leading" {
		t.Errorf("base64: %q %v", v, ok)
	}
	if _, ok := decodeHeaderValue("=?base64?!!?="); ok {
		t.Error("bad base64 accepted")
	}
}

func TestLegacyTargets(t *testing.T) {
	legacy, err := legacySet(false, "0-2, 7")
	if err != nil {
		t.Fatal(err)
	}
	for tid, want := range map[int]bool{0: true, 2: true, 3: false, 7: true, 8: false} {
		if legacy(tid) != want {
			t.Errorf("target %d legacy %v", tid, !want)
		}
	}
	if _, err := legacySet(false, "5-2"); err == nil {
		t.Error("a backwards range accepted")
	}
}

func TestArrivalsKeepTheLastAndFilter(t *testing.T) {
	var tg target
	for i := 0; i < arrivalsKept+10; i++ {
		tg.record(float64(i))
	}
	var got []float64
	tg.each(func(at float64) { got = append(got, at) })
	if len(got) != arrivalsKept || got[0] != 10 || got[len(got)-1] != arrivalsKept+9 {
		t.Errorf("kept %d, from %v to %v", len(got), got[0], got[len(got)-1])
	}
}
