// Package config is the one configuration convention of every tracepipe
// binary (docs/configuration.md):
//
//   - Each stage's Config has RegisterFlags(fs, prefix) binding its fields to
//     flags named prefix+name, with the Config's current values as defaults.
//     A stage's own binary uses prefix ""; `tracepipe run` composes the
//     stages with "<stage>-" prefixes (--aggregator-dimensions), keeping
//     older names as aliases (Alias).
//   - Every flag has an environment variable, EnvName(flag): TRACEPIPE_ and
//     the flag name in upper case with '-' and '.' as '_'
//     (--aggregator-flush-interval ← TRACEPIPE_AGGREGATOR_FLUSH_INTERVAL).
//     A flag given on the command line wins over its variable, the variable
//     wins over the default. Parse applies both; Document adds the variable's
//     name to every flag's help text.
//   - Validate() error never changes the Config and reports every problem
//     at once (errors.Join); defaults and normalisation are a separate,
//     explicit step before it.
//
// The package holds no state: everything it does is to the FlagSet given.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// EnvPrefix starts every environment variable of tracepipe.
const EnvPrefix = "TRACEPIPE_"

// EnvName is the environment variable of a flag name.
func EnvName(flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return EnvPrefix + strings.ToUpper(r.Replace(flagName))
}

// Lookup reads an environment variable (os.LookupEnv's signature).
type Lookup func(string) (string, bool)

// Parse parses args into fs, then sets every flag not given on the command
// line from its environment variable (lookup; nil means os.LookupEnv).
// Positional arguments are left in fs.Args(). The error of a bad variable
// names it and its value; errors of several variables are joined.
func Parse(fs *flag.FlagSet, args []string, lookup Lookup) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return ApplyEnv(fs, lookup)
}

// ApplyEnv sets every flag of fs not given on the command line (fs.Parse
// was called) from its environment variable. A flag and its aliases are one
// setting: when any of them was given, no variable is read for any of them;
// otherwise the target's variable is read before the aliases' ones (the
// last one present wins), so an older variable name keeps working.
func ApplyEnv(fs *flag.FlagSet, lookup Lookup) error {
	return ApplyEnvOf(fs, lookup, nil)
}

// ApplyEnvOf is ApplyEnv for the flags of fs that keep accepts (nil: all):
// for commands whose other flags are per-invocation arguments (a query's
// --service), which the environment should not supply.
func ApplyEnvOf(fs *flag.FlagSet, lookup Lookup, keep func(name string) bool) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[canonical(f)] = true })
	var names []string // targets first, then aliases, each in lexical order
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*aliasValue); !ok {
			names = append(names, f.Name)
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*aliasValue); ok {
			names = append(names, f.Name)
		}
	})
	var errs []error
	for _, name := range names {
		f := fs.Lookup(name)
		if given[canonical(f)] || (keep != nil && !keep(f.Name)) {
			continue
		}
		env := EnvName(f.Name)
		if v, ok := lookup(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

func canonical(f *flag.Flag) string {
	if a, ok := f.Value.(*aliasValue); ok {
		return a.target
	}
	return f.Name
}

// aliasValue is the Value of an alias: the target's Value under another name.
type aliasValue struct {
	flag.Value
	target string
}

// String shows the target's value ("" for the zero aliasValue the flag
// package makes to find defaults).
func (a *aliasValue) String() string {
	if a == nil || a.Value == nil {
		return ""
	}
	return a.Value.String()
}

// IsBoolFlag lets a boolean alias be given without a value, like its target.
func (a *aliasValue) IsBoolFlag() bool {
	b, ok := a.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Alias registers name on fs as another name of the flag target, which
// must be registered already (it panics otherwise, like a flag registered
// twice: a programming error). Setting either sets the same value.
func Alias(fs *flag.FlagSet, name, target string) {
	f := fs.Lookup(target)
	if f == nil {
		panic(fmt.Sprintf("config: alias %q of undefined flag %q", name, target))
	}
	fs.Var(&aliasValue{Value: f.Value, target: target}, name, "alias of --"+target)
}

// Document appends each flag's environment variable to its help text
// ("... (env TRACEPIPE_IDLE_TIMEOUT)"), once. Call it after every flag is
// registered and before the help is printed.
func Document(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		suffix := " (env " + EnvName(f.Name) + ")"
		if !strings.HasSuffix(f.Usage, suffix) {
			f.Usage += suffix
		}
	})
}

// Compose registers on dst every flag of src whose name is not in omit,
// under the same name and Value. A binary that runs several stages
// registers each one's flags on a FlagSet of its own (with the stage's
// prefix) and composes them, leaving out the flags it sets itself (such as
// the brokers, which every stage of one process shares). Omitted flags keep
// their defaults.
func Compose(dst, src *flag.FlagSet, omit ...string) {
	skip := map[string]bool{}
	for _, o := range omit {
		if src.Lookup(o) == nil {
			panic(fmt.Sprintf("config: omitted flag %q is not defined", o))
		}
		skip[o] = true
	}
	src.VisitAll(func(f *flag.Flag) {
		if !skip[f.Name] {
			dst.Var(f.Value, f.Name, f.Usage)
		}
	})
}

// Stage registers the flags of one stage of a multi-stage process on dst,
// named prefix+name: register (a Config's RegisterFlags) binds them on a
// FlagSet of their own, and Compose copies all but the stage's Kafka
// connection flags (prefix+"kafka-…": the process registers one connection
// for every stage) and prefix+name for each name in omit (settings the
// process wires itself, such as a topic one stage writes and the next
// reads).
func Stage(dst *flag.FlagSet, prefix string, register func(fs *flag.FlagSet, prefix string), omit ...string) {
	src := flag.NewFlagSet(prefix, flag.ContinueOnError)
	register(src, prefix)
	var skip []string
	src.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, prefix+"kafka-") {
			skip = append(skip, f.Name)
		}
	})
	for _, o := range omit {
		skip = append(skip, prefix+o)
	}
	Compose(dst, src, skip...)
}

// flagRef is a flag named in an error message.
var flagRef = regexp.MustCompile(`--([a-z0-9][a-z0-9.-]*[a-z0-9])`)

// Rename rewrites the flag names in err (a stage's Validate, which names
// its flags without a prefix) to the names they have on fs under prefix:
// "--batch-size" becomes "--indexer-batch-size" when fs has that flag.
// Names fs does not have under prefix stay as they are. nil stays nil.
func Rename(err error, fs *flag.FlagSet, prefix string) error {
	if err == nil || prefix == "" {
		return err
	}
	msg := flagRef.ReplaceAllStringFunc(err.Error(), func(ref string) string {
		if name := strings.TrimPrefix(ref, "--"); fs.Lookup(prefix+name) != nil {
			return "--" + prefix + name
		}
		return ref
	})
	return errors.New(msg)
}

// Flag is one row of a flag table.
type Flag struct {
	Name, Env, Default, Usage string
}

// Table lists fs's flags in lexical order with their variables and
// defaults, for docs/configuration.md.
func Table(fs *flag.FlagSet) []Flag {
	var out []Flag
	fs.VisitAll(func(f *flag.Flag) {
		usage := strings.TrimSuffix(f.Usage, " (env "+EnvName(f.Name)+")")
		out = append(out, Flag{Name: f.Name, Env: EnvName(f.Name), Default: f.DefValue, Usage: usage})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Markdown renders Table(fs) as a Markdown table.
func Markdown(fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	esc := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, f := range Table(fs) {
		def := f.Default
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, f.Env, esc.Replace(def), esc.Replace(f.Usage))
	}
	return b.String()
}

// List is a flag.Value of a comma-separated list; blanks around items and
// empty items are dropped. Setting it replaces the list.
type List struct{ P *[]string }

// String joins the list with commas.
func (l List) String() string {
	if l.P == nil {
		return ""
	}
	return strings.Join(*l.P, ",")
}

// Set replaces the list with the items of v.
func (l List) Set(v string) error {
	*l.P = SplitList(v)
	return nil
}

// SplitList splits a comma-separated list, trimming blanks and dropping
// empty items; "" gives nil.
func SplitList(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Func is a flag.Value parsed by a function, shown by another.
type Func struct {
	Show  func() string
	Parse func(string) error
}

// String shows the current value.
func (f Func) String() string {
	if f.Show == nil {
		return ""
	}
	return f.Show()
}

// Set parses v.
func (f Func) Set(v string) error { return f.Parse(v) }
