// Package credprovider: TEMPORARY stub until the endpoint lands.
package credprovider

import (
	"context"
	"time"
)

const Path = "/credential-provider/v1"

type Answer struct {
	Rule, Username, Password string
	ExpiresAt                time.Time
}

type Lookup interface {
	Credential(ctx context.Context, namespace, serviceAccount, host string) (Answer, bool, error)
}
