package tcrapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TokenType is the kind of instance token, as the controller names it.
type TokenType string

const (
	// Temporary is a token that lasts one hour: the API's TokenType "temp".
	Temporary TokenType = "Temporary"
	// LongTerm is a token that lasts until it is deleted: the API's TokenType "longterm".
	LongTerm TokenType = "LongTerm"
)

// APIValue is the API's TokenType value: "longterm" for LongTerm, "temp" for anything else (the
// API's default).
func (t TokenType) APIValue() string {
	if t == LongTerm {
		return "longterm"
	}
	return "temp"
}

const (
	// pageSize is the Limit of each DescribeInstanceToken call.
	pageSize = 100
	// MaxTokens is the most long-term tokens DescribeInstanceToken lists; an instance with more
	// is an error.
	MaxTokens = 1000
)

// Token is a token CreateInstanceToken minted: the user name and password of a docker login.
type Token struct {
	Username string
	Token    string
	// ExpiresAt is the API's ExpTime; zero when the API gave none (or 0). The API documents an
	// ExpTime for long-term tokens too.
	ExpiresAt time.Time
	// TokenID is the ID of a long-term token, for DeleteInstanceToken; the API gives temporary
	// tokens none. The API documents the field as possibly null, so it could be empty for a
	// long-term token too; DescribeInstanceToken lists the token with its Desc then.
	TokenID string
}

// TokenInfo is a long-term token as DescribeInstanceToken lists it.
type TokenInfo struct {
	ID      string
	Desc    string
	Enabled bool
	// CreatedAt is zero when the API's CreatedAt could not be read.
	CreatedAt time.Time
	// ExpiresAt is the API's ExpiredAt; zero when it is absent or 0.
	ExpiresAt time.Time
}

// CreateInstanceToken mints a token of the instance registryID: a long-term one with the
// description desc when longTerm, else a temporary one (one hour).
func (c *Client) CreateInstanceToken(ctx context.Context, registryID string, longTerm bool, desc string) (Token, error) {
	const action = "CreateInstanceToken"
	if registryID == "" {
		return Token{}, fmt.Errorf("%s: no instance ID", action)
	}
	tokenType := Temporary
	if longTerm {
		tokenType = LongTerm
	}
	params := map[string]any{"RegistryId": registryID, "TokenType": tokenType.APIValue()}
	if desc != "" {
		params["Desc"] = desc
	}
	var out struct {
		Username flexString
		Token    string
		ExpTime  flexInt
		TokenID  flexString `json:"TokenId"`
	}
	if err := c.do(ctx, action, params, &out); err != nil {
		return Token{}, err
	}
	if out.Token == "" || out.Username == "" {
		return Token{}, fmt.Errorf("%s: TCR API %s answered without a token or without a user name", action, c.endpoint)
	}
	return Token{Username: string(out.Username), Token: out.Token, ExpiresAt: epoch(int64(out.ExpTime)), TokenID: string(out.TokenID)}, nil
}

// DeleteInstanceToken deletes the long-term token tokenID of the instance registryID. An unknown
// token is an API error (IsNotFound tells).
func (c *Client) DeleteInstanceToken(ctx context.Context, registryID, tokenID string) error {
	const action = "DeleteInstanceToken"
	if registryID == "" || tokenID == "" {
		return fmt.Errorf("%s: no instance ID or no token ID", action)
	}
	return c.do(ctx, action, map[string]any{"RegistryId": registryID, "TokenId": tokenID}, &struct{}{})
}

// DescribeInstanceToken lists the long-term tokens of the instance registryID, every page of
// them; more than MaxTokens is an error.
func (c *Client) DescribeInstanceToken(ctx context.Context, registryID string) ([]TokenInfo, error) {
	const action = "DescribeInstanceToken"
	if registryID == "" {
		return nil, fmt.Errorf("%s: no instance ID", action)
	}
	var tokens []TokenInfo
	seen := map[string]bool{}
	// Tokens created or deleted between pages shift the others: one may come twice (kept once)
	// or be missed; a page count bound ends the loop whatever the API answers.
	for offset, pages := 0, 0; pages <= MaxTokens/pageSize; pages++ {
		var out struct {
			TotalCount flexInt
			Tokens     []struct {
				ID        flexString `json:"Id"`
				Desc      string
				Enabled   bool
				CreatedAt string
				ExpiredAt flexInt
			}
		}
		if err := c.do(ctx, action, map[string]any{"RegistryId": registryID, "Limit": pageSize, "Offset": offset}, &out); err != nil {
			return nil, err
		}
		if out.TotalCount > MaxTokens {
			return nil, fmt.Errorf("%s: instance %s has %d long-term tokens, more than the %d this client lists", action, registryID, out.TotalCount, MaxTokens)
		}
		for _, t := range out.Tokens {
			if seen[string(t.ID)] {
				continue
			}
			seen[string(t.ID)] = true
			tokens = append(tokens, TokenInfo{
				ID: string(t.ID), Desc: t.Desc, Enabled: t.Enabled,
				CreatedAt: parseTime(t.CreatedAt), ExpiresAt: epoch(int64(t.ExpiredAt)),
			})
		}
		offset += len(out.Tokens)
		if len(out.Tokens) == 0 || offset >= int(out.TotalCount) {
			return tokens, nil
		}
	}
	return nil, fmt.Errorf("%s: instance %s: more than %d pages of long-term tokens", action, registryID, MaxTokens/pageSize+1)
}

// do calls action and decodes the Response object of the answer into out.
func (c *Client) do(ctx context.Context, action string, params map[string]any, out any) error {
	body, err := c.call(ctx, action, params)
	if err != nil {
		return err
	}
	var resp struct{ Response json.RawMessage }
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	// The error of a decoder may quote the body, which holds a token: never pass it on.
	if err := d.Decode(&resp); err != nil || len(resp.Response) == 0 || json.Unmarshal(resp.Response, out) != nil {
		return fmt.Errorf("%s: TCR API %s answered with a Response the client cannot read", action, c.endpoint)
	}
	return nil
}

// epoch reads a timestamp of the API: milliseconds since the epoch, or seconds when below 1e11
// (before 1973 in milliseconds, after 5138 in seconds); zero for 0 or less.
func epoch(v int64) time.Time {
	switch {
	case v <= 0:
		return time.Time{}
	case v < 1e11:
		return time.Unix(v, 0).UTC()
	}
	return time.UnixMilli(v).UTC()
}

// chinaTime is the zone of the API's times that carry none (Beijing time).
var chinaTime = time.FixedZone("UTC+8", 8*60*60)

// parseTime reads a time string of the API: RFC 3339, or "2006-01-02 15:04:05" in Beijing time,
// possibly followed by a zone offset; zero when it is none of these.
func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	for _, layout := range []string{"2006-01-02 15:04:05 -0700 MST", "2006-01-02 15:04:05 -0700", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, chinaTime); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// flexString is a JSON string or number (the API's documented examples show a Username as a
// number).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*f = flexString(n)
		return nil
	}
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s != nil {
		*f = flexString(*s)
	}
	return nil
}

// flexInt is a JSON integer, possibly as a string (the API's documented examples show an ExpTime
// as one); null is 0.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// A float of the SDK's re-encoding, such as 1.7e+12.
		fv, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || fv != float64(int64(fv)) {
			return fmt.Errorf("not an integer")
		}
		v = int64(fv)
	}
	*f = flexInt(v)
	return nil
}
