package metrics

// TraceIDHex exposes traceIDHex to the tests.
var TraceIDHex = traceIDHex
