package smoke

import (
	"context"
	"net/http"
	"testing"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// nopStore is the smallest store the stages accept; nothing is written.
type nopStore struct{}

func (nopStore) WriteTraces(context.Context, []model.AssembledTrace) error { return nil }
func (nopStore) WriteRollups(context.Context, []model.Rollup) error        { return nil }
func (nopStore) RollupSeries(context.Context, model.RollupQuery) ([]model.Rollup, error) {
	return nil, nil
}

// exportedMetricNames builds every stage the way the binaries do (nothing
// is contacted: constructors only) on a registerer that records metric
// names, and returns them.
func exportedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	rec := &nameRecorder{names: map[string]bool{}}
	brokers := []string{"127.0.0.1:1"}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	icfg := ingest.DefaultConfig()
	icfg.Brokers = brokers
	_, err := ingest.New(icfg, ingest.Options{Registry: rec})
	must("ingester", err)

	ccfg := collector.DefaultConfig()
	ccfg.Brokers, ccfg.SpansTopic = brokers, "spans"
	_, err = collector.New(ccfg, collector.Options{Registry: rec})
	must("collector", err)
	pcfg := tpkafka.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Topic = brokers, "spans"
	p, err := tpkafka.NewProducer(pcfg, tpkafka.Options{Name: "collector", Registry: rec})
	must("collector producer", err)
	ctx, cancel := withTimeout()
	defer cancel()
	defer p.Close(ctx)

	xcfg := index.DefaultConfig()
	xcfg.Brokers = brokers
	_, err = index.New(xcfg, nopStore{}, index.Options{Registry: rec})
	must("indexer", err)

	dl, err := deadletter.New(deadletter.Config{Brokers: brokers}, deadletter.Options{Registry: rec})
	must("store dead letters", err)
	defer dl.Close()

	acfg := aggregator.DefaultConfig()
	acfg.Brokers = brokers
	_, err = aggregator.New(acfg, nopStore{}, aggregator.Options{Registry: rec})
	must("aggregator", err)

	_, err = query.Limit(http.NotFoundHandler(), query.DefaultLimits(), query.LimitOptions{Registry: rec})
	must("query limits", err)

	es, err := elasticsearch.New(ctx, elasticsearch.Config{URLs: []string{"http://127.0.0.1:1"}, SkipTemplates: true, Registerer: rec})
	must("elasticsearch", err)
	defer es.Close()

	// The consumer-group runtime every stage shares (tracepipe_kafka_*).
	_, err = tpkafka.NewGroup(tpkafka.GroupConfig{Client: tpkafka.ClientConfig{Brokers: brokers}, Group: "g", Topic: "t", Stage: "s",
		NewProcessor: func(tpkafka.Assignment) (tpkafka.Processor, error) { return nil, nil }}, tpkafka.GroupOptions{Registry: rec})
	must("kafka group", err)
	return rec.names
}
