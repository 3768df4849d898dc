//go:build !unix

package testenv

// SelfUsage is not measured here (zero).
func SelfUsage() Usage { return Usage{} }
