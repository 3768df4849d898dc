// Package smoke holds integration tests proving that the services started by
// deploy/local/services.sh are real and usable from Go the way tracepipe uses
// them: a kafka-go consumer group against Apache Kafka, olivere/elastic
// against the Elasticsearch-API engine, promtool on alerting rules, and
// Prometheus scraping a /metrics endpoint through file_sd.
//
// The tests read the services' addresses through internal/testenv: run
// locally without the services they skip, saying how to start them; under
// CI=true a missing service fails them.
package smoke
