package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"sync"
)

// The protocol revisions served: the 2026-07-28 stateless revision and the
// revisions of the initialize handshake (mcp_types.version).
const modernVersion = "2026-07-28"

var handshakeVersions = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}

const latestHandshakeVersion = "2025-11-25"

// The 2026-07-28 request envelope's keys in params._meta, and the result's serverInfo key.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaServerInfo         = "io.modelcontextprotocol/serverInfo"
)

const healthURI = "health://status"

// JSON-RPC error codes (mcp_types.jsonrpc).
const (
	codeParseError        = -32700
	codeInvalidRequest    = -32600
	codeMethodNotFound    = -32601
	codeInvalidParams     = -32602
	codeHeaderMismatch    = -32020
	codeUnsupportedVerson = -32022
)

// httpStatusOf is the SDK's ERROR_CODE_HTTP_STATUS: the status of a 2026-07-28
// answer carrying that error; any other code is answered 200.
func httpStatusOf(code int) int {
	switch code {
	case codeParseError, codeInvalidRequest, codeInvalidParams, codeHeaderMismatch, codeUnsupportedVerson, -32021:
		return 400
	case codeMethodNotFound:
		return 404
	}
	return 200
}

func isHandshakeVersion(v string) bool {
	for _, known := range handshakeVersions {
		if v == known {
			return true
		}
	}
	return false
}

// identity is who the server says it is (serverInfo) and its instructions.
type identity struct {
	name, version, instructions string
	// serverInfo, pre-serialised: {"name":...,"version":...}
	info []byte
}

func newIdentity(name, version, instructions string) identity {
	info := appendJSONString([]byte(`{"name":`), name)
	info = append(info, `,"version":`...)
	info = appendJSONString(info, version)
	info = append(info, '}')
	return identity{name: name, version: version, instructions: instructions, info: info}
}

// message is one decoded JSON-RPC message, its params apart.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
}

// wireMessage is a message with its params, decoded in one pass.
type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Params  *params         `json:"params"`
}

// requestHead is how a client that writes JSON compactly starts a request
// (the operator's probe sends the same bytes each read but for the id).
var requestHead = []byte(`{"jsonrpc":"2.0","id":`)

// memoSize bounds the memo of decoded request tails.
const memoSize = 4096

// decoded is a request decoded once: its method and params (read-only, shared).
type decoded struct {
	method *string
	params params
}

// decodeMemo remembers the decoding of requests that differ only in their id
// (a number): the probe's steady read is one such request, sent again and
// again. Whatever is not of that form is decoded as it comes.
type decodeMemo struct {
	mu sync.Mutex
	m  map[string]*decoded
}

func (dm *decodeMemo) decode(body []byte) (m message, p params, badParams, ok bool) {
	rest, found := bytes.CutPrefix(body, requestHead)
	digits := 0
	for found && digits < len(rest) && digits < 16 && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits == len(rest) || rest[digits] != ',' || (rest[0] == '0' && digits > 1) {
		return decode(body)
	}
	id, tail := rest[:digits], rest[digits:]
	dm.mu.Lock()
	hit := dm.m[string(tail)]
	dm.mu.Unlock()
	if hit != nil {
		return message{JSONRPC: "2.0", ID: json.RawMessage(string(id)), Method: hit.method}, hit.params, false, true
	}
	m, p, badParams, ok = decode(body)
	// Kept only when the whole decode agrees with what a hit would give (a
	// repeated "id" key in the tail, say, would not).
	if ok && !badParams && m.Method != nil && m.JSONRPC == "2.0" && bytes.Equal(m.ID, id) && len(tail) <= 4096 {
		dm.mu.Lock()
		if len(dm.m) < memoSize {
			dm.m[string(tail)] = &decoded{method: m.Method, params: p}
		}
		dm.mu.Unlock()
	}
	return m, p, badParams, ok
}

// decode is the message in body and its params. ok is false when body is
// no JSON object; badParams, when its params are not of the expected shape.
func decode(body []byte) (m message, p params, badParams, ok bool) {
	var w wireMessage
	if json.Unmarshal(body, &w) == nil {
		m = message{JSONRPC: w.JSONRPC, ID: w.ID, Method: w.Method}
		if w.Params != nil {
			p = *w.Params
		}
		return m, p, false, true
	}
	if json.Unmarshal(body, &m) != nil {
		return message{}, params{}, false, false
	}
	return m, params{}, true, true
}

func (m *message) isRequest() bool {
	return m.ID != nil && !bytes.Equal(m.ID, []byte("null")) && m.Method != nil
}

func (m *message) isNotification() bool { return m.ID == nil && m.Method != nil }

type params struct {
	URI             string                     `json:"uri"`
	Name            string                     `json:"name"`
	Arguments       map[string]json.RawMessage `json:"arguments"`
	ProtocolVersion string                     `json:"protocolVersion"`
	Meta            *envelopeMeta              `json:"_meta"`
}

// envelopeMeta is what the 2026-07-28 envelope must carry in params._meta.
type envelopeMeta struct {
	ProtocolVersion    json.RawMessage `json:"io.modelcontextprotocol/protocolVersion"`
	ClientCapabilities json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
}

// rpcError is a JSON-RPC error; data is raw JSON or nil.
type rpcError struct {
	code    int
	message string
	data    []byte
}

// call is one request to one target, in one era.
type call struct {
	t      *target
	modern bool
	client string
	method string
	params params
}

// dispatch answers one request: the result object's JSON, or an error.
func (s *server) dispatch(c *call, b []byte) ([]byte, *rpcError) {
	switch c.method {
	case "server/discover":
		if !c.modern || c.t.legacy {
			return nil, methodNotFound(c.method)
		}
		b = append(b, `{"cacheScope":"private","capabilities":{"resources":{},"tools":{}}`...)
		if s.id.instructions != "" {
			b = append(b, `,"instructions":`...)
			b = appendJSONString(b, s.id.instructions)
		}
		b = append(b, `,"supportedVersions":["`+modernVersion+`"]`...)
		return s.modernTail(b, true), nil
	case "ping":
		if c.modern {
			return nil, methodNotFound(c.method) // removed in 2026-07-28
		}
		return append(b, "{}"...), nil
	case "resources/list":
		b = s.resultHead(b, c)
		b = append(b, `"resources":[{"description":"Health check endpoint (the guide's HealthCheckResponse).","mimeType":"application/json","name":"health_status","uri":"`+healthURI+`"}]`...)
		return s.resultTail(b, c, true), nil
	case "resources/templates/list":
		b = s.resultHead(b, c)
		b = append(b, `"resourceTemplates":[]`...)
		return s.resultTail(b, c, true), nil
	case "resources/read":
		if c.params.URI != healthURI {
			data := appendJSONString([]byte(`{"uri":`), c.params.URI)
			data = append(data, '}')
			return nil, &rpcError{codeInvalidParams, "Unknown resource: " + c.params.URI, data}
		}
		doc := s.fleet.read(c.t, c.client, getBuffer(), true)
		b = s.resultHead(b, c)
		b = append(b, `"contents":[{"mimeType":"application/json","text":`...)
		b = appendJSONBytesAsString(b, doc)
		putBuffer(doc)
		b = append(b, `,"uri":"`+healthURI+`"}]`...)
		return s.resultTail(b, c, true), nil
	case "tools/list":
		b = s.resultHead(b, c)
		b = append(b, `"tools":[{"description":"Set this target's health status.","inputSchema":{"type":"object","properties":{"status":{"type":"string","enum":["healthy","degraded","unhealthy"]}},"required":["status"]},"name":"set_status"}]`...)
		return s.resultTail(b, c, true), nil
	case "tools/call":
		text, failed := s.callTool(c)
		b = append(b, `{"content":[{"text":`...)
		b = appendJSONString(b, text)
		b = append(b, `,"type":"text"}],"isError":`...)
		b = strconv.AppendBool(b, failed)
		if c.modern {
			b = append(b, ',')
			return s.modernTail(b, false), nil
		}
		return append(b, '}'), nil
	}
	return nil, methodNotFound(c.method)
}

func methodNotFound(method string) *rpcError {
	return &rpcError{codeMethodNotFound, "Method not found: " + method, nil}
}

func (s *server) callTool(c *call) (text string, failed bool) {
	if c.params.Name != "set_status" {
		return "Unknown tool: " + c.params.Name, true
	}
	var status string
	if raw, ok := c.params.Arguments["status"]; !ok || json.Unmarshal(raw, &status) != nil {
		return "set_status: status must be a string", true
	}
	code, ok := parseStatus(status)
	if !ok {
		return "set_status: status must be one of healthy, degraded, unhealthy, not " + strconv.Quote(status), true
	}
	s.fleet.flip([]int{c.t.tid}, code)
	return `{"target": ` + strconv.Itoa(c.t.tid) + `, "status": "` + status + `"}`, false
}

// resultHead opens a result object: a 2026-07-28 result starts with its cacheScope.
func (s *server) resultHead(b []byte, c *call) []byte {
	if c.modern {
		return append(b, `{"cacheScope":"private",`...)
	}
	return append(b, '{')
}

func (s *server) resultTail(b []byte, c *call, cacheable bool) []byte {
	if !c.modern {
		return append(b, '}')
	}
	b = append(b, ',')
	return s.modernTail(b, cacheable)
}

// modernTail closes a 2026-07-28 result: resultType, ttlMs (cacheable
// results) and the serverInfo in _meta, as the SDK's server writes them.
func (s *server) modernTail(b []byte, cacheable bool) []byte {
	if b[len(b)-1] != ',' && b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, `"resultType":"complete"`...)
	if cacheable {
		b = append(b, `,"ttlMs":0`...)
	}
	b = append(b, `,"_meta":{"`+metaServerInfo+`":`...)
	b = append(b, s.id.info...)
	return append(b, "}}"...)
}

// initializeResult is the legacy handshake's answer at the negotiated version.
func (s *server) initializeResult(b []byte, version string) []byte {
	b = append(b, `{"capabilities":{"resources":{"listChanged":false,"subscribe":false},"tools":{"listChanged":false}}`...)
	if s.id.instructions != "" {
		b = append(b, `,"instructions":`...)
		b = appendJSONString(b, s.id.instructions)
	}
	b = append(b, `,"protocolVersion":`...)
	b = appendJSONString(b, version)
	b = append(b, `,"serverInfo":`...)
	b = append(b, s.id.info...)
	return append(b, '}')
}

// negotiate is the version a legacy server answers initialize with: the
// client's, if it is one of the handshake revisions, else the latest.
func negotiate(requested string) string {
	if isHandshakeVersion(requested) {
		return requested
	}
	return latestHandshakeVersion
}

// envelope is the 2026-07-28 validation ladder (mcp.shared.inbound's
// classify_inbound_request): the _meta envelope, then (headers given) the
// routing headers against the body, then the version.
func envelope(m *message, p *params, header func(string) (string, bool)) *rpcError {
	meta := p.Meta
	if meta == nil {
		return &rpcError{codeInvalidParams, "params._meta must be an object carrying the required '" +
			metaProtocolVersion + "' and '" + metaClientCapabilities + "' envelope keys", nil}
	}
	rawVersion := meta.ProtocolVersion
	hasVersion, hasCaps := rawVersion != nil, meta.ClientCapabilities != nil
	if !hasVersion || !hasCaps {
		var missing []byte
		if !hasVersion {
			missing = append(missing, metaProtocolVersion...)
		}
		if !hasCaps {
			if missing != nil {
				missing = append(missing, ", "...)
			}
			missing = append(missing, metaClientCapabilities...)
		}
		return &rpcError{codeInvalidParams, "params._meta is missing the required envelope key(s): " + string(missing), nil}
	}
	version, isString := jsonString(rawVersion)
	if header != nil {
		got, ok := header("Mcp-Protocol-Version")
		if !ok || !isString || got != version {
			return &rpcError{codeHeaderMismatch, "mcp-protocol-version header does not match the request envelope's protocol version", nil}
		}
		if got, ok := header("Mcp-Method"); !ok || got != *m.Method {
			return &rpcError{codeHeaderMismatch, "mcp-method header does not match the request body's method", nil}
		}
		var name, key string
		switch *m.Method {
		case "resources/read":
			name, key = p.URI, "uri"
		case "tools/call", "prompts/get":
			name, key = p.Name, "name"
		}
		if key != "" && name != "" {
			got, _ := header("Mcp-Name")
			if decoded, ok := decodeHeaderValue(got); !ok || decoded != name {
				return &rpcError{codeHeaderMismatch, "mcp-name header does not match the request body's '" + key + "' parameter", nil}
			}
		}
	}
	if !isString {
		return &rpcError{codeInvalidParams, "the protocol-version envelope value must be a string", nil}
	}
	return unsupportedVersion(version)
}

// jsonString is the string raw holds, if it holds one.
func jsonString(raw json.RawMessage) (string, bool) {
	n := len(raw)
	if n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : n-1]), true // the common case: no escapes
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// unsupportedVersion is the -32022 rejection of a version this server does not serve, or nil.
func unsupportedVersion(requested string) *rpcError {
	if requested == modernVersion {
		return nil
	}
	data := []byte(`{"supported":["` + modernVersion + `"],"requested":`)
	data = appendJSONString(data, requested)
	data = append(data, '}')
	return &rpcError{codeUnsupportedVerson, "Unsupported protocol version", data}
}

// decodeHeaderValue undoes the SDK's encode_header_value: a value wrapped in
// =?base64?...?= is the base64 of its UTF-8 text.
func decodeHeaderValue(v string) (string, bool) {
	const prefix, suffix = "=?base64?", "?="
	if len(v) < len(prefix)+len(suffix) || v[:len(prefix)] != prefix || v[len(v)-len(suffix):] != suffix {
		return v, true
	}
	payload := v[len(prefix) : len(v)-len(suffix)]
	decoded, err := base64.StdEncoding.DecodeString(payload)
	if err != nil || base64.StdEncoding.EncodeToString(decoded) != payload {
		return "", false
	}
	return string(decoded), true
}

// appendResponse appends the JSON-RPC response to id: result (JSON) or err.
func appendResponse(b []byte, id json.RawMessage, result []byte, err *rpcError) []byte {
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	if len(id) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	if err != nil {
		b = append(b, `,"error":{"code":`...)
		b = strconv.AppendInt(b, int64(err.code), 10)
		b = append(b, `,"message":`...)
		b = appendJSONString(b, err.message)
		if err.data != nil {
			b = append(b, `,"data":`...)
			b = append(b, err.data...)
		}
		return append(b, "}}"...)
	}
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}
