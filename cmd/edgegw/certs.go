package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/tlsx"
)

func init() {
	register(command{name: "certs", summary: "make a CA, server and client certificates (init, client)", run: certsCmd})
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

const certsUsage = `usage:
  edgegw certs init --dir DIR --server-name NAME [--server-name NAME …] --client-name NAME [flags]
  edgegw certs client --dir DIR [flags] NAME
`

func certsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, certsUsage)
		return exitUsage
	}
	switch args[0] {
	case "init":
		return certsInit(args[1:], stdout, stderr)
	case "client":
		return certsClient(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, certsUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "edgegw certs: unknown subcommand %q\n%s", args[0], certsUsage)
	return exitUsage
}

// keyFlags are the flags init and client share.
type keyFlags struct {
	dir, keyType, passwordFile string
	days                       int
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.dir, "dir", "", "directory for the certificates and keys (required)")
	fs.StringVar(&k.keyType, "key-type", "ecdsa", "ecdsa (P-256), rsa2048 or rsa4096")
	fs.IntVar(&k.days, "days", certs.DefaultDays, "validity of the server and client certificates, in days")
	fs.StringVar(&k.passwordFile, "key-password-file", "", "encrypt the CA and client keys with the password in this file (a bare name is a systemd credential); for `certs client` it also opens the CA key")
}

func (k *keyFlags) options() (certs.Options, error) {
	o := certs.Options{Dir: k.dir, KeyType: k.keyType, Days: k.days}
	if k.dir == "" {
		return o, errors.New("--dir is required")
	}
	if k.passwordFile != "" {
		pw, err := tlsx.ReadPassword(k.passwordFile)
		if err != nil {
			return o, err
		}
		o.KeyPassword = string(pw)
	}
	return o, nil
}

// parseInterspersed parses flags that may come after positional arguments
// (`certs client NAME --dir DIR`) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func certsInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k keyFlags
	k.register(fs)
	var servers, clients stringList
	fs.Var(&servers, "server-name", "DNS name or IP address of the upstream broker (repeatable; the first is its CN)")
	fs.Var(&clients, "client-name", "name of a gateway to make a client certificate for (repeatable)")
	force := fs.Bool("force", false, "replace an existing CA (every certificate it signed stops being trusted)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "edgegw certs init: unexpected argument %q\n%s", pos[0], certsUsage)
		return exitUsage
	}
	o, err := k.options()
	if err != nil {
		fmt.Fprintf(stderr, "edgegw certs init: %v\n", err)
		return exitUsage
	}
	if len(servers) == 0 || len(clients) == 0 {
		fmt.Fprintf(stderr, "edgegw certs init: --server-name and --client-name are required\n%s", certsUsage)
		return exitUsage
	}
	o.ServerNames, o.ClientNames, o.Overwrite = servers, clients, *force
	f, err := certs.Init(o)
	if err != nil {
		fmt.Fprintf(stderr, "edgegw certs init: %v\n", err)
		return exitFailure
	}
	f.KeyPasswordFile = k.passwordFile
	fmt.Fprintf(stdout, "CA      %s (%s)\n        %s\n", f.CA.Cert, f.CA.Name, f.CA.Key)
	fmt.Fprintf(stdout, "server  %s (%s)\n        %s\n", f.Server.Cert, strings.Join(servers, ", "), f.Server.Key)
	for _, c := range f.Clients {
		fmt.Fprintf(stdout, "client  %s (%s)\n        %s\n", c.Cert, c.Name, c.Key)
	}
	fmt.Fprintf(stdout, "\n# mosquitto.conf on the upstream broker (copy ca.crt, server.crt and server.key there):\n")
	fmt.Fprintf(stdout, "per_listener_settings false\nallow_anonymous false\n%s", certs.MosquittoListener(f, 8883))
	for _, c := range f.Clients {
		fmt.Fprintf(stdout, "\n# gateway.toml of %s (copy ca.crt, %s.crt and %s.key to it):\n%s", c.Name, c.Name, c.Name, certs.GatewayTLSBlock(f, c.Name))
	}
	return exitOK
}

func certsClient(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var k keyFlags
	k.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "edgegw certs client: give exactly one client name\n%s", certsUsage)
		return exitUsage
	}
	o, err := k.options()
	if err != nil {
		fmt.Fprintf(stderr, "edgegw certs client: %v\n", err)
		return exitUsage
	}
	f, err := certs.Client(k.dir, pos[0], o)
	if err != nil {
		fmt.Fprintf(stderr, "edgegw certs client: %v\n", err)
		return exitFailure
	}
	f.KeyPasswordFile = k.passwordFile
	c := f.Clients[0]
	fmt.Fprintf(stdout, "client  %s (%s, signed by %s)\n        %s\n", c.Cert, c.Name, f.CA.Name, c.Key)
	fmt.Fprintf(stdout, "\n# gateway.toml of %s (copy ca.crt, %s.crt and %s.key to it):\n%s", c.Name, c.Name, c.Name, certs.GatewayTLSBlock(f, c.Name))
	return exitOK
}
