package index

import "flag"

// RegisterFlags binds c's fields to flags named prefix+name on fs (the Kafka
// connection's as kafka.ClientConfig.RegisterFlags), with c's current values
// as defaults; every flag also reads TRACEPIPE_<NAME> (internal/config).
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	c.ClientConfig.RegisterFlags(fs, prefix)
	p := func(name string) string { return prefix + name }
	fs.StringVar(&c.Topic, p("topic"), c.Topic, "topic of assembled traces (the ingester's --traces-topic)")
	fs.StringVar(&c.Group, p("group"), c.Group, "consumer group of the indexer")
	fs.IntVar(&c.BatchSize, p("batch-size"), c.BatchSize, "traces held and written to the store at once")
	fs.DurationVar(&c.BatchWait, p("batch-wait"), c.BatchWait, "how long a partly filled batch waits for more traces")
	fs.DurationVar(&c.MaxBackoff, p("max-backoff"), c.MaxBackoff, "longest pause between retries of a failed store write")
	fs.DurationVar(&c.SessionTimeout, p("session-timeout"), c.SessionTimeout, "consumer group session timeout")
}
