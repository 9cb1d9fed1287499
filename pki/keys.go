package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cloudflare/cfssl/csr"
)

// parseAlgorithm maps kubeadm's encryptionAlgorithm names to a cfssl key request.
func parseAlgorithm(alg string) (*csr.KeyRequest, error) {
	switch alg {
	case AlgorithmRSA2048, "":
		return &csr.KeyRequest{A: "rsa", S: 2048}, nil
	case AlgorithmRSA3072:
		return &csr.KeyRequest{A: "rsa", S: 3072}, nil
	case AlgorithmRSA4096:
		return &csr.KeyRequest{A: "rsa", S: 4096}, nil
	case AlgorithmECDSAP256:
		return &csr.KeyRequest{A: "ecdsa", S: 256}, nil
	case AlgorithmECDSAP384:
		return &csr.KeyRequest{A: "ecdsa", S: 384}, nil
	}
	return nil, fmt.Errorf("unknown key algorithm %q: use one of %s, %s, %s, %s, %s",
		alg, AlgorithmRSA2048, AlgorithmRSA3072, AlgorithmRSA4096, AlgorithmECDSAP256, AlgorithmECDSAP384)
}

// NewPrivateKey generates one private key of the given algorithm with cfssl.
func NewPrivateKey(alg string) (crypto.Signer, error) {
	kr, err := parseAlgorithm(alg)
	if err != nil {
		return nil, err
	}
	k, err := kr.Generate()
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("generate %s key: unexpected key type %T", alg, k)
}

// KeyPool generates private keys ahead of need, concurrently (one worker per
// CPU). RSA key generation dominates certificate creation (kubeadm spends
// ~0.8 s on it during init); a pool started early takes it off the critical
// path. Get hands out pre-generated keys in the order they finish and falls
// back to generating inline once the pool is used up, or for another
// algorithm. A KeyPool is safe for concurrent use.
type KeyPool struct {
	algorithm string
	keys      chan keyResult
	want      int64
	taken     atomic.Int64
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type keyResult struct {
	key crypto.Signer
	err error
}

// NewKeyPool starts generating n keys of the algorithm in the background.
func NewKeyPool(algorithm string, n int) (*KeyPool, error) {
	if algorithm == "" {
		algorithm = DefaultAlgorithm
	}
	if _, err := parseAlgorithm(algorithm); err != nil {
		return nil, err
	}
	if n < 0 {
		n = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &KeyPool{algorithm: algorithm, keys: make(chan keyResult, n), want: int64(n), cancel: cancel}
	workers := min(n, runtime.GOMAXPROCS(0))
	var next atomic.Int64
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for next.Add(1) <= int64(n) {
				if ctx.Err() != nil {
					p.keys <- keyResult{err: ctx.Err()}
					continue
				}
				k, err := NewPrivateKey(algorithm)
				p.keys <- keyResult{key: k, err: err}
			}
		}()
	}
	return p, nil
}

// Algorithm is the algorithm of the pool's keys.
func (p *KeyPool) Algorithm() string { return p.algorithm }

// Get returns a key of the algorithm: a pre-generated one while there are,
// else a freshly generated one. A nil pool generates inline.
func (p *KeyPool) Get(algorithm string) (crypto.Signer, error) {
	if algorithm == "" {
		algorithm = DefaultAlgorithm
	}
	if p == nil || algorithm != p.algorithm || p.taken.Add(1) > p.want {
		return NewPrivateKey(algorithm)
	}
	r := <-p.keys
	if r.err != nil {
		return NewPrivateKey(algorithm)
	}
	return r.key, nil
}

// Close stops generating keys nobody took yet and waits for the workers.
// Safe to call more than once; a closed pool still serves Get (inline).
func (p *KeyPool) Close() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
}
