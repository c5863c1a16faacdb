package admission

import (
	"context"
	"testing"
)

// BenchmarkValidate measures the webhook's own work per request: engine.Validate of the sample.
func BenchmarkValidate(b *testing.B) {
	ips := sample()
	for b.Loop() {
		if _, err := (Validator{}).ValidateCreate(context.Background(), ips); err != nil {
			b.Fatal(err)
		}
	}
}
