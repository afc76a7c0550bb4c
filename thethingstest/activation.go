package thethingstest

import (
	"errors"
	"slices"
	"strings"
)

// AddActivationCode registers (or replaces) an activation code. With
// WithDataDir it is kept there; should the disk fail, the directory is
// unusable and writes are answered 500 from then on.
func (s *Server) AddActivationCode(c ActivationCode) { _ = s.addActivationCode(c) }

func (s *Server) addActivationCode(c ActivationCode) error {
	return s.commit("code", func() []byte { return mustJSON(codeRecord{Code: c.Code, Product: c.ProductID}) }, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.codes[c.Code] = c
	})
}

// ActivationCodes returns the activation codes not used yet, sorted by
// code.
func (s *Server) ActivationCodes() []ActivationCode {
	s.mu.RLock()
	out := make([]ActivationCode, 0, len(s.codes))
	for _, c := range s.codes {
		out = append(out, c)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b ActivationCode) int { return strings.Compare(a.Code, b.Code) })
	return out
}

// errCodeNotFound is activate's answer for an unknown or used code.
var errCodeNotFound = errors.New(msgCodeNotFound)

// activate consumes code and returns a new thing token and thing id; the
// error is errCodeNotFound or a failure to store the change.
func (s *Server) activate(code, productID string, hasProduct bool) (token, id string, err error) {
	if s.journal != nil {
		s.logMu.Lock() // the record and the change in the same order
	}
	s.mu.Lock()
	c, found := s.codes[code]
	if !found || (hasProduct && c.ProductID != "" && c.ProductID != productID) {
		err = errCodeNotFound
	} else {
		for {
			token = randomID()
			if _, dup := s.things[token]; !dup {
				break
			}
		}
	}
	var end int64
	if err == nil && s.journal != nil {
		end, err = s.journal.append(recordPayload("activate", mustJSON(codeRecord{Code: code, Token: token})))
	}
	if err == nil {
		delete(s.codes, code)
		s.addThingLocked(token)
	}
	s.mu.Unlock()
	if s.journal != nil {
		s.logMu.Unlock()
		if err == nil {
			err = s.journal.sync(end)
		}
	}
	if err != nil {
		return "", "", err
	}
	return token, randomID(), nil
}
