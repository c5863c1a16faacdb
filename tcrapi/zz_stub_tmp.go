package tcrapi

// TEMPORARY stub until the client lands.

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
)

type Config struct {
	Endpoint string
	RootCAs  *x509.CertPool
	Timeout  time.Duration
}
type Client struct{}

func Identity() (common.CredentialIface, error)                          { return nil, errors.New("no identity") }
func New(cfg Config, cred common.CredentialIface, region string) *Client { return &Client{} }

type Token struct {
	Username, Token string
	ExpiresAt       time.Time
	TokenID         string
}
type TokenInfo struct {
	ID, Desc             string
	Enabled              bool
	CreatedAt, ExpiresAt time.Time
}

func (c *Client) CreateInstanceToken(ctx context.Context, registryID string, longTerm bool, desc string) (Token, error) {
	return Token{}, nil
}
func (c *Client) DeleteInstanceToken(ctx context.Context, registryID, tokenID string) error {
	return nil
}
func (c *Client) DescribeInstanceToken(ctx context.Context, registryID string) ([]TokenInfo, error) {
	return nil, nil
}

type APIError struct{ Code, Message, RequestID string }

func (e *APIError) Error() string  { return e.Code + ": " + e.Message }
func (e *APIError) Reason() string { return strings.ReplaceAll(e.Code, ".", "_") }
func IsAuthError(err error) bool   { return false }
func IsNotFound(err error) bool    { return false }
