// Package kubeletflags writes and reads the kubelet flags file,
// /var/lib/kubelet/kubeadm-flags.env, in kubeadm's format:
//
//	KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.201.0.2"
//
// Render is its one writer (init and join, through manifests.KubeletFlags)
// and Parse its one reader (the node service starting the kubelet, reset
// and the node's name lookup, with Last).
//
// # The format rule
//
// Both follow systemd, which reads this file under kubeadm: kubeadm's
// drop-in loads it with EnvironmentFile= and runs
// ExecStart=kubelet … $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS. The file
// is therefore read in two steps, and a value has to survive both:
//
//  1. EnvironmentFile syntax (systemd's env-file.c): KEY=VALUE lines; blank
//     lines and lines starting with # or ; ignored; blanks around the key
//     and before the value dropped; a value in single quotes literal, in
//     double quotes with \" \\ \$ \` unescaped, \ before a line break
//     joining lines and any other \x kept as \x; an unquoted value with its
//     trailing blanks dropped and a backslash making the next character
//     literal. A later assignment to the same key wins.
//  2. Each variable's value split into the kubelet's arguments as systemd
//     splits an unbraced $VAR in ExecStart= (extract_first_word with
//     EXTRACT_UNQUOTE|EXTRACT_RELAX): at blanks (space, tab, line breaks),
//     where single or double quotes group a word and are removed, and a
//     backslash, inside quotes too, makes the next character literal.
//
// So Render backslash-escapes, inside each argument, the characters step 2
// would split or unquote at (blanks, quotes, backslashes), then writes the
// line in double quotes with " \ $ ` backslash-escaped for step 1: the
// kubelet receives every value byte for byte, whether systemd or the node
// service starts it. Values without those characters are written as they
// are, so the file is byte-identical to kubeadm's (fmt's %q of the joined
// flags) and kubeadm's own reader (ReadKubeletDynamicEnvFile: trim the
// quotes, split at blanks) reads it too. (kubeadm's %q is not right for
// systemd once a value has a quote or a non-printable character: %q's \t
// or \x41 are no escapes in either step, and a bare ' starts a quote in
// step 2.)
//
// What systemd cannot carry is refused before anything is written, by
// config validation with CheckName and CheckValue: text that is not UTF-8
// (systemd ignores such a variable, and the kubelet would start without
// any of the file's flags) and control characters, tab and line break
// included (no kubelet flag takes one, and kubeadm's reader and people
// read the file as one line of blank-separated flags).
//
// Parse is stricter than systemd where systemd silently skips or guesses: a line
// that is not KEY=VALUE, an invalid variable name, a value that is not
// UTF-8 or ends inside a quote or after a lone backslash make it fail,
// naming the line, rather than start a kubelet with part of its flags.
package kubeletflags

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Variables of the flags file that hold kubelet arguments, in the order
// kubeadm's drop-in passes them: KUBELET_KUBEADM_ARGS is what init and
// join write; KUBELET_EXTRA_ARGS, which kubeadm reads from
// /etc/default/kubelet, is honoured in this file too.
const (
	KubeadmArgsVar = "KUBELET_KUBEADM_ARGS"
	ExtraArgsVar   = "KUBELET_EXTRA_ARGS"
)

// Flag is one kubelet flag, written as --Name=Value.
type Flag struct {
	Name, Value string
}

// Arg is the flag as the kubelet receives it: --name=value.
func (f Flag) Arg() string { return "--" + f.Name + "=" + f.Value }

// Render writes flags as kubeadm-flags.env: one KUBELET_KUBEADM_ARGS line
// (see the package documentation for the quoting). Parse(Render(flags))
// gives back each flag's Arg() whenever the values are UTF-8; config
// validation (CheckName, CheckValue) keeps out what systemd could not read.
func Render(flags []Flag) []byte {
	args := make([]string, len(flags))
	for i, f := range flags {
		args[i] = f.Arg()
	}
	return renderArgs(args)
}

// wordSpecial are the characters that step 2 (word splitting) would split
// or unquote at; systemd's WHITESPACE is " \t\n\r".
const wordSpecial = " \t\n\r'\"\\"

// envSpecial are the characters a double-quoted EnvironmentFile value
// unescapes (systemd's SHELL_NEED_ESCAPE).
const envSpecial = "\"\\$`"

// renderArgs writes arbitrary arguments as one KUBELET_KUBEADM_ARGS line.
func renderArgs(args []string) []byte {
	var line strings.Builder
	for i, a := range args {
		if i > 0 {
			line.WriteByte(' ')
		}
		if a == "" { // an empty argument (never a Flag's) needs quotes to be one
			line.WriteString("''")
		}
		for j := 0; j < len(a); j++ {
			if strings.IndexByte(wordSpecial, a[j]) >= 0 {
				line.WriteByte('\\')
			}
			line.WriteByte(a[j])
		}
	}
	s := line.String()
	b := make([]byte, 0, len(KubeadmArgsVar)+len(s)+8)
	b = append(b, KubeadmArgsVar...)
	b = append(b, '=', '"')
	for j := 0; j < len(s); j++ {
		if strings.IndexByte(envSpecial, s[j]) >= 0 {
			b = append(b, '\\')
		}
		b = append(b, s[j])
	}
	return append(b, '"', '\n')
}

// Parse returns the kubelet arguments a flags file holds, read the way
// systemd reads them (see the package documentation): the words of
// KUBELET_KUBEADM_ARGS, then those of KUBELET_EXTRA_ARGS; other variables
// are ignored. Errors name the line or the variable; callers add the path.
func Parse(data []byte) ([]string, error) {
	env, err := parseEnv(data)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, name := range []string{KubeadmArgsVar, ExtraArgsVar} {
		v, ok := env[name]
		if !ok {
			continue
		}
		words, err := splitWords(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		args = append(args, words...)
	}
	return args, nil
}

// Last returns the value the kubelet takes for its flag name among args:
// the last occurrence, written --name=value or --name value, wins, as it
// does in the kubelet for every single-valued flag (pflag sets the flag
// again at each occurrence; list and map flags such as --node-labels add
// up instead, and Last is not for them). Names are compared as the kubelet
// normalizes them (Normalize). Arguments after "--" are not flags. Last
// takes args to be well-formed: every other flag that has a value written
// with "=" (as kubeadm and kubeforge write them), or the word after it
// could be mistaken for a flag.
func Last(args []string, name string) (value string, ok bool) {
	want := Normalize(name)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		rest, isFlag := strings.CutPrefix(a, "--")
		if !isFlag {
			continue
		}
		n, v, hasValue := strings.Cut(rest, "=")
		if Normalize(n) != want {
			continue
		}
		switch {
		case hasValue:
			value, ok = v, true
		case i+1 < len(args):
			i++
			value, ok = args[i], true
		}
	}
	return value, ok
}

// Normalize is a flag name as the kubelet reads it: underscores become
// dashes (component-base's WordSepNormalizeFunc), so --cgroup_root is
// --cgroup-root.
func Normalize(name string) string { return strings.ReplaceAll(name, "_", "-") }

// CheckName reports whether name can be a kubelet flag name in the file:
// given without dashes, letters, digits, '-', '_' and '.' only.
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty flag name")
	}
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("%q: give the flag name without dashes", name)
	}
	for _, c := range name {
		if c != '-' && c != '_' && c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return fmt.Errorf("%q is not a kubelet flag name (letters, digits, '-', '_' and '.')", name)
		}
	}
	return nil
}

// CheckValue reports whether value reaches the kubelet unchanged through
// the flags file: UTF-8 without control characters. Blanks, quotes,
// backslashes, $ and ` are fine (Render escapes them).
func CheckValue(value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%q is not valid UTF-8 text: systemd would ignore the whole kubelet flags variable", value)
	}
	for _, r := range value {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q has a control character (%U): no kubelet flag takes one, and the flags file is read as one line of flags", value, r)
		}
	}
	return nil
}

// isBlank reports systemd's WHITESPACE (" \t\n\r").
func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isNewline reports systemd's NEWLINE ("\n\r").
func isNewline(c byte) bool { return c == '\n' || c == '\r' }

// parseEnv reads EnvironmentFile syntax: a port of systemd's
// parse_env_file_internal (src/basic/env-file.c) state by state, with
// errors where systemd skips or guesses (see the package documentation).
func parseEnv(data []byte) (map[string]string, error) {
	const (
		preKey = iota
		inKey
		preValue
		inValue
		valueEscape
		singleQuote
		doubleQuote
		doubleQuoteEscape
		inComment
	)
	env := map[string]string{}
	state := preKey
	line, keyLine := 1, 1
	var key, val []byte
	keyBlank, valBlank := -1, -1 // start of trailing blanks, or -1
	push := func(trim bool) error {
		if keyBlank >= 0 {
			key = key[:keyBlank]
		}
		if trim && valBlank >= 0 {
			val = val[:valBlank]
		}
		k := string(key)
		if !validName(k) {
			return fmt.Errorf("line %d: invalid variable name %q", keyLine, k)
		}
		if !utf8.Valid(val) {
			return fmt.Errorf("line %d: %s: the value is not valid UTF-8 (systemd ignores it)", keyLine, k)
		}
		env[k] = string(val)
		return nil
	}
	for _, c := range data {
		switch state {
		case preKey:
			switch {
			case c == '#' || c == ';':
				state = inComment
			case !isBlank(c):
				state, keyLine = inKey, line
				key, keyBlank = append(key[:0], c), -1
			}
		case inKey:
			switch {
			case isNewline(c):
				return nil, fmt.Errorf("line %d: %q is not KEY=VALUE", keyLine, strings.TrimSpace(string(key)))
			case c == '=':
				state, val, valBlank = preValue, val[:0], -1
			default:
				if !isBlank(c) {
					keyBlank = -1
				} else if keyBlank < 0 {
					keyBlank = len(key)
				}
				key = append(key, c)
			}
		case preValue:
			switch {
			case isNewline(c):
				if err := push(false); err != nil {
					return nil, err
				}
				state = preKey
			case c == '\'':
				state = singleQuote
			case c == '"':
				state = doubleQuote
			case c == '\\':
				state = valueEscape
			case !isBlank(c):
				state = inValue
				val = append(val, c)
			}
		case inValue:
			switch {
			case isNewline(c):
				if err := push(true); err != nil {
					return nil, err
				}
				state = preKey
			case c == '\\':
				state, valBlank = valueEscape, -1
			default:
				if !isBlank(c) {
					valBlank = -1
				} else if valBlank < 0 {
					valBlank = len(val)
				}
				val = append(val, c)
			}
		case valueEscape:
			state = inValue
			if !isNewline(c) { // an escaped line break is eaten
				val = append(val, c)
			}
		case singleQuote:
			if c == '\'' {
				state = preValue
			} else {
				val = append(val, c)
			}
		case doubleQuote:
			switch c {
			case '"':
				state = preValue
			case '\\':
				state = doubleQuoteEscape
			default:
				val = append(val, c)
			}
		case doubleQuoteEscape:
			state = doubleQuote
			switch {
			case strings.IndexByte(envSpecial, c) >= 0:
				val = append(val, c)
			case c == '\n': // continued line
			default: // kept, as the shell does
				val = append(val, '\\', c)
			}
		case inComment:
			if isNewline(c) {
				state = preKey
			}
		}
		if c == '\n' {
			line++
		}
	}
	switch state {
	case inKey:
		return nil, fmt.Errorf("line %d: %q is not KEY=VALUE", keyLine, strings.TrimSpace(string(key)))
	case singleQuote, doubleQuote, doubleQuoteEscape:
		return nil, fmt.Errorf("line %d: %s: unterminated quote (systemd would take the rest of the file as the value)", keyLine, strings.TrimSpace(string(key)))
	case preValue, inValue, valueEscape:
		if err := push(state == inValue); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// validName reports a valid variable name, as systemd's
// env_name_is_valid: letters, digits and '_', not starting with a digit.
func validName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c != '_' && (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// splitWords splits a variable's value into arguments as systemd does for
// an unbraced $VAR in ExecStart= (extract_first_word with
// EXTRACT_UNQUOTE|EXTRACT_RELAX): blanks separate words; single or double
// quotes group and are removed; a backslash, in quotes too, makes the next
// character literal. An unterminated quote or a trailing lone backslash,
// which systemd tolerates, is an error.
func splitWords(s string) ([]string, error) {
	var words []string
	i := 0
	for {
		for i < len(s) && isBlank(s[i]) {
			i++
		}
		if i == len(s) {
			return words, nil
		}
		var w strings.Builder
		var quote byte
	word:
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\':
				if i+1 == len(s) {
					return nil, fmt.Errorf("%q ends in a lone backslash", s)
				}
				i++
				w.WriteByte(s[i])
			case quote != 0:
				if c == quote {
					quote = 0
				} else {
					w.WriteByte(c)
				}
			case c == '\'' || c == '"':
				quote = c
			case isBlank(c):
				break word
			default:
				w.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
		}
		words = append(words, w.String())
	}
}

// PlainArgs returns the arguments of a flags file in kubeadm's plain format
// (one KUBELET_KUBEADM_ARGS="…" line of blank-separated printable words
// without quotes, backslashes, $ or `), as anyone reading it would split
// them, and false for a file in any other form. It is the reference that
// tests hold Parse to.
func PlainArgs(data string) (args []string, ok bool) {
	inner, ok := strings.CutPrefix(strings.TrimSuffix(data, "\n"), KubeadmArgsVar+`="`)
	if !ok {
		return nil, false
	}
	inner, ok = strings.CutSuffix(inner, `"`)
	if !ok || !utf8.ValidString(inner) {
		return nil, false
	}
	for _, r := range inner {
		if r != ' ' && (!strconv.IsPrint(r) || strings.ContainsRune("\"'\\$`", r)) {
			return nil, false
		}
	}
	return strings.Fields(inner), true
}
