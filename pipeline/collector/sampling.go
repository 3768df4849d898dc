package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"

	"github.com/uber/jaeger-client-go/thrift-gen/sampling"
)

// Strategies answers the Jaeger agent's sampling endpoint from a Jaeger
// strategies file:
//
//	{
//	  "default_strategy": {"type": "probabilistic", "param": 0.5,
//	    "operation_strategies": [{"operation": "GET /health", "type": "probabilistic", "param": 0}]},
//	  "service_strategies": [
//	    {"service": "frontend", "type": "probabilistic", "param": 0.8},
//	    {"service": "feed", "type": "ratelimiting", "param": 5}
//	  ]
//	}
//
// type is "probabilistic" (param: probability 0..1) or "ratelimiting"
// (param: traces per second, 0..32767). operation_strategies (probabilistic
// only) give per-operation rates; a service without its own takes the
// default strategy's. A service the file does not name gets
// default_strategy, or probabilistic 0.001 (Jaeger's default) when the file
// has none. The answer is jaeger-client-go's SamplingStrategyResponse in
// JSON (strategyType as its name, as Jaeger's agent answers).
type Strategies struct {
	def      *sampling.SamplingStrategyResponse
	services map[string]*sampling.SamplingStrategyResponse
}

type strategyFile struct {
	Default  *strategyJSON  `json:"default_strategy"`
	Services []strategyJSON `json:"service_strategies"`
}

type strategyJSON struct {
	Service    string          `json:"service"`
	Type       string          `json:"type"`
	Param      float64         `json:"param"`
	Operations []operationJSON `json:"operation_strategies"`
}

type operationJSON struct {
	Operation string  `json:"operation"`
	Type      string  `json:"type"`
	Param     float64 `json:"param"`
}

// DefaultStrategies gives every service a probabilistic strategy.
func DefaultStrategies(probability float64) *Strategies {
	return &Strategies{def: probabilistic(probability)}
}

func probabilistic(p float64) *sampling.SamplingStrategyResponse {
	return &sampling.SamplingStrategyResponse{
		StrategyType:          sampling.SamplingStrategyType_PROBABILISTIC,
		ProbabilisticSampling: &sampling.ProbabilisticSamplingStrategy{SamplingRate: p},
	}
}

// LoadStrategies reads a strategies file.
func LoadStrategies(path string) (*Strategies, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sampling strategies: %w", err)
	}
	s, err := ParseStrategies(b)
	if err != nil {
		return nil, fmt.Errorf("sampling strategies %s: %w", path, err)
	}
	return s, nil
}

// ParseStrategies reads the strategies file format (see Strategies) and
// reports every problem.
func ParseStrategies(b []byte) (*Strategies, error) {
	var f strategyFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	var errs []error
	s := &Strategies{services: map[string]*sampling.SamplingStrategyResponse{}}
	var defOps []operationJSON
	if f.Default != nil {
		r, err := f.Default.response(nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("default_strategy: %w", err))
		}
		s.def = r
		defOps = f.Default.Operations
	} else {
		s.def = probabilistic(0.001)
	}
	for i, st := range f.Services {
		if st.Service == "" {
			errs = append(errs, fmt.Errorf("service_strategies[%d]: service is empty", i))
			continue
		}
		if _, dup := s.services[st.Service]; dup {
			errs = append(errs, fmt.Errorf("service_strategies[%d]: service %q named twice", i, st.Service))
			continue
		}
		r, err := st.response(defOps)
		if err != nil {
			errs = append(errs, fmt.Errorf("service_strategies[%d] (%s): %w", i, st.Service, err))
			continue
		}
		s.services[st.Service] = r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func (st *strategyJSON) response(defOps []operationJSON) (*sampling.SamplingStrategyResponse, error) {
	var r *sampling.SamplingStrategyResponse
	switch st.Type {
	case "probabilistic":
		if st.Param < 0 || st.Param > 1 {
			return nil, fmt.Errorf("probabilistic param %g must be between 0 and 1", st.Param)
		}
		r = probabilistic(st.Param)
	case "ratelimiting":
		if st.Param < 0 || st.Param > math.MaxInt16 {
			return nil, fmt.Errorf("ratelimiting param %g must be between 0 and %d traces per second", st.Param, math.MaxInt16)
		}
		r = &sampling.SamplingStrategyResponse{
			StrategyType:         sampling.SamplingStrategyType_RATE_LIMITING,
			RateLimitingSampling: &sampling.RateLimitingSamplingStrategy{MaxTracesPerSecond: int16(st.Param)},
		}
	default:
		return nil, fmt.Errorf("type %q must be probabilistic or ratelimiting", st.Type)
	}
	ops := st.Operations
	if ops == nil {
		ops = defOps
	}
	if len(ops) == 0 {
		return r, nil
	}
	defRate := st.Param
	if r.StrategyType != sampling.SamplingStrategyType_PROBABILISTIC {
		defRate = 0
	}
	per := &sampling.PerOperationSamplingStrategies{DefaultSamplingProbability: defRate}
	for j, op := range ops {
		if op.Type != "probabilistic" || op.Param < 0 || op.Param > 1 || op.Operation == "" {
			return nil, fmt.Errorf("operation_strategies[%d]: want an operation with type probabilistic and param between 0 and 1", j)
		}
		per.PerOperationStrategies = append(per.PerOperationStrategies, &sampling.OperationSamplingStrategy{
			Operation: op.Operation, ProbabilisticSampling: &sampling.ProbabilisticSamplingStrategy{SamplingRate: op.Param},
		})
	}
	r.OperationSampling = per
	return r, nil
}

// For returns the strategy of a service.
func (s *Strategies) For(service string) *sampling.SamplingStrategyResponse {
	if r, ok := s.services[service]; ok {
		return r
	}
	return s.def
}

// samplingHandler serves GET /sampling?service=NAME (and / as the agent
// does for older clients).
func (c *Collector) samplingHandler() http.Handler {
	mux := http.NewServeMux()
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			c.m.sampling.WithLabelValues("bad_request").Inc()
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		svc := r.URL.Query().Get("service")
		if svc == "" {
			c.m.sampling.WithLabelValues("bad_request").Inc()
			http.Error(w, "'service' parameter must be provided", http.StatusBadRequest)
			return
		}
		b, err := json.Marshal(c.strategies.For(svc))
		if err != nil {
			c.m.sampling.WithLabelValues("error").Inc()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c.m.sampling.WithLabelValues("ok").Inc()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
	mux.HandleFunc("/sampling", h)
	mux.HandleFunc("/", h)
	return mux
}
