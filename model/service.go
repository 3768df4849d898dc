package model

// ServiceOperations is one service of the stored spans and the names of its
// operations, sorted.
type ServiceOperations struct {
	Service    string
	Operations []string
}

// MaxServiceOperations bounds the (service, operation) pairs a services
// listing returns; a store that holds more says the listing is truncated.
const MaxServiceOperations = 10000
