package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/kubeforge/kubeforge/config"
)

// Variables of the kubelet flags file that hold kubelet flags, in the order
// kubeadm's systemd drop-in expands them (KUBELET_EXTRA_ARGS, which
// kubeadm reads from /etc/default/kubelet, is honoured here too).
var kubeletFlagVars = []string{"KUBELET_KUBEADM_ARGS", "KUBELET_EXTRA_ARGS"}

// KubeletArgs returns the kubelet's command line after the program name:
// the config file and kubeconfigs the kubeadm drop-in passes, then the flags
// of p.KubeletFlagsFile() (missing file: none). It is read at every kubelet
// start, so a rewritten flags file takes effect at the next restart.
func KubeletArgs(p config.Paths) ([]string, error) {
	args := []string{
		"--config=" + p.KubeletConfigFile(),
		"--kubeconfig=" + p.Kubeconfig("kubelet.conf"),
	}
	if boot := p.Kubeconfig("bootstrap-kubelet.conf"); exists(p.Host(boot)) {
		args = append(args, "--bootstrap-kubeconfig="+boot)
	}
	data, err := os.ReadFile(p.Host(p.KubeletFlagsFile()))
	if errors.Is(err, fs.ErrNotExist) {
		return args, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kubelet flags: %w", err)
	}
	extra, err := ParseKubeletFlags(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.KubeletFlagsFile(), err)
	}
	return append(args, extra...), nil
}

// ParseKubeletFlags returns the kubelet flags of a flags file in kubeadm's
// format (kubeadm-flags.env):
//
//	KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.201.0.2"
//
// The file is read the way systemd reads an EnvironmentFile (comments,
// quotes, escapes, continued lines); each variable's value is then split
// into words at blanks, as systemd does for an unquoted $VAR in ExecStart,
// except that quotes inside the value group words too (so
// --node-labels="a=b c" survives).
func ParseKubeletFlags(data string) ([]string, error) {
	env, err := ParseEnvFile(data)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, name := range kubeletFlagVars {
		v, ok := env[name]
		if !ok {
			continue
		}
		words, err := SplitWords(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		args = append(args, words...)
	}
	return args, nil
}

// ParseEnvFile parses systemd EnvironmentFile syntax: KEY=VALUE
// assignments, blank lines and lines starting with # or ; ignored, an
// optional "export " prefix, values optionally in single quotes (literal)
// or double quotes (with \" \\ \$ \` escapes), a backslash at the end of a
// line continuing the value. Unquoted trailing blanks are dropped. A later
// assignment to the same key wins.
func ParseEnvFile(data string) (map[string]string, error) {
	env := map[string]string{}
	s := strings.ReplaceAll(data, "\r\n", "\n")
	line := 1
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '\n':
			line++
			i++
			continue
		case c == ' ' || c == '\t':
			i++
			continue
		case c == '#' || c == ';':
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		}
		start, startLine := i, line
		for i < len(s) && s[i] != '=' && s[i] != '\n' {
			i++
		}
		if i == len(s) || s[i] == '\n' {
			return nil, fmt.Errorf("line %d: %q is not KEY=VALUE", startLine, strings.TrimSpace(s[start:i]))
		}
		key := strings.TrimSpace(s[start:i])
		key = strings.TrimSpace(strings.TrimPrefix(key, "export "))
		if !validEnvKey(key) {
			return nil, fmt.Errorf("line %d: invalid variable name %q", startLine, key)
		}
		i++ // '='
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var val strings.Builder
		var quote byte
		trimmable := 0 // length of val up to the last quoted or escaped byte
	value:
		for i < len(s) {
			c := s[i]
			switch quote {
			case '\'':
				if c == '\'' {
					quote = 0
					trimmable = val.Len()
				} else {
					if c == '\n' {
						line++
					}
					val.WriteByte(c)
				}
				i++
				continue
			case '"':
				switch {
				case c == '"':
					quote = 0
					trimmable = val.Len()
					i++
				case c == '\\' && i+1 < len(s):
					n := s[i+1]
					switch {
					case n == '\n':
						line++
					case strings.IndexByte("\"\\$`", n) >= 0:
						val.WriteByte(n)
					default:
						val.WriteByte('\\')
						val.WriteByte(n)
					}
					i += 2
				default:
					if c == '\n' {
						line++
					}
					val.WriteByte(c)
					i++
				}
				continue
			}
			switch c {
			case '\n':
				break value
			case '\'', '"':
				quote = c
				i++
			case '\\':
				if i+1 < len(s) {
					if s[i+1] == '\n' {
						line++
					} else {
						val.WriteByte(s[i+1])
						trimmable = val.Len()
					}
				}
				i += 2
			default:
				val.WriteByte(c)
				i++
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("line %d: %s: unterminated %c quote", startLine, key, quote)
		}
		v := val.String()
		env[key] = v[:trimmable] + strings.TrimRight(v[trimmable:], " \t")
	}
	return env, nil
}

func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// SplitWords splits s into words at blanks; single or double quotes group
// blanks into a word and are removed, a backslash escapes a blank, a quote
// or a backslash (and is kept before anything else, so a value's Windows
// path or regexp survives).
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case '\'', '"':
			quote, inWord = c, true
		case '\\':
			inWord = true
			if i+1 < len(s) && strings.IndexByte(" \t\n'\"\\", s[i+1]) >= 0 {
				i++
			}
			cur.WriteByte(s[i])
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// kubeletConfigPresent reports whether the kubelet's config file exists.
func kubeletConfigPresent(p config.Paths) bool {
	return exists(p.Host(p.KubeletConfigFile()))
}
