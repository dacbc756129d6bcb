package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
	"io"
	"strings"
	"time"

	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

func init() {
	register(command{name: "tls-check", summary: "connect to the upstream broker and explain any TLS or MQTT failure", run: tlsCheckCmd})
}

func tlsCheckCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tls-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o tlsx.Options
	addr := fs.String("address", "", "the broker: host:port or mqtts://host:port (mqtt://host:port for plain MQTT)")
	fs.StringVar(&o.CAFile, "cafile", "", "PEM file of the CA(s) to trust")
	fs.StringVar(&o.CAPath, "capath", "", "directory of PEM CA certificates to trust")
	fs.StringVar(&o.CertFile, "certfile", "", "our client certificate")
	fs.StringVar(&o.KeyFile, "keyfile", "", "our private key")
	fs.StringVar(&o.KeyPasswordFile, "key-password-file", "", "password of an encrypted key (a bare name is a systemd credential)")
	fs.StringVar(&o.ServerName, "server-name", "", "name to check the server certificate against (default: the host of --address)")
	fs.StringVar(&o.MinVersion, "tls-version", "1.2", "lowest TLS version to accept: 1.2 or 1.3")
	fs.BoolVar(&o.Insecure, "insecure", false, "do not verify the server certificate (diagnosis only)")
	clientID := fs.String("client-id", "edgegw-tls-check", "MQTT client id")
	username := fs.String("username", "", "MQTT user name")
	passwordFile := fs.String("password-file", "", "file holding the MQTT password")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for each step")
	protocol := fs.String("protocol", "3.1.1", "MQTT protocol of the CONNECT: 3.1.1 or 5 (with -c: the file's upstream.protocol)")
	cfgPath := fs.String("c", "", "check the upstream of this configuration file (every address in turn)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *cfgPath != "" {
		return tlsCheckConfig(*cfgPath, *clientID, *timeout, stdout, stderr)
	}
	if *addr == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: edgegw tls-check --address host:port [--cafile FILE] [--certfile FILE --keyfile FILE] …")
		return exitUsage
	}
	req := tlsdiag.Request{Addr: *addr, TLS: o, ClientID: *clientID, Username: *username, Timeout: *timeout}
	switch *protocol {
	case "3.1.1", "4":
	case "5":
		req.Version = 5
	default:
		fmt.Fprintf(stderr, "edgegw tls-check: --protocol %q: want 3.1.1 or 5\n", *protocol)
		return exitUsage
	}
	if *passwordFile != "" {
		pw, err := tlsx.ReadPassword(*passwordFile)
		if err != nil {
			fmt.Fprintf(stderr, "edgegw tls-check: %v\n", err)
			return exitUsage
		}
		req.Password = pw
	}
	return tlsCheck(req, stdout)
}

// tlsCheck runs the check and prints the report; `-c FILE` only has to
// build req from the configuration's [upstream] table.
func tlsCheck(req tlsdiag.Request, stdout io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 4*req.Timeout+time.Second)
	defer cancel()
	rep := tlsdiag.CheckWith(ctx, req)
	printReport(stdout, req, rep)
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}

func printReport(w io.Writer, req tlsdiag.Request, rep tlsdiag.Report) {
	var b strings.Builder
	if rep.OK {
		fmt.Fprintf(&b, "OK: %s — TLS and MQTT CONNECT succeeded\n", req.Addr)
	} else {
		fmt.Fprintf(&b, "FAIL [%s]: %s\nhint: %s\n", rep.Code, rep.Cause, rep.Hint)
	}
	if rep.TLSVersion != "" {
		fmt.Fprintf(&b, "  TLS:     %s, %s\n", rep.TLSVersion, rep.Cipher)
	}
	for i, c := range rep.ServerChain {
		label := "  server:  "
		if i > 0 {
			label = "           "
		}
		fmt.Fprintf(&b, "%s%s\n", label, c)
	}
	if len(rep.ServerNames) > 0 {
		fmt.Fprintf(&b, "  names:   %s\n", strings.Join(rep.ServerNames, ", "))
	}
	if rep.ClientIdentity != "" {
		fmt.Fprintf(&b, "  client:  %s\n", rep.ClientIdentity)
	}
	if req.TLS.Insecure {
		b.WriteString("  WARNING: insecure = true: the server certificate was NOT verified\n")
	}
	if infos, err := tlsx.Expiry(req.TLS); err == nil {
		for _, ci := range infos {
			if ci.DaysLeft < 30 {
				fmt.Fprintf(&b, "  WARNING: %s (%s) expires in %d days, on %s\n", ci.Path, ci.Subject, ci.DaysLeft, ci.NotAfter.UTC().Format(time.DateOnly))
			}
		}
	}
	io.WriteString(w, b.String())
}

// tlsCheckConfig checks every upstream address of a configuration file with
// its [upstream.tls] settings, user name and password.
func tlsCheckConfig(path, clientID string, timeout time.Duration, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(stderr, err)
		return exitConfig
	}
	u := cfg.Upstream
	if u == nil {
		fmt.Fprintf(stderr, "edgegw tls-check: %s has no [upstream]; nothing to check\n", path)
		return exitConfig
	}
	var o tlsx.Options
	if u.TLS != nil {
		o = gateway.TLSOptions(u.TLS)
	}
	if u.ClientID != "" {
		clientID = u.ClientID + "-tls-check"
	}
	code := exitOK
	for _, a := range u.Address {
		req := tlsdiag.Request{Addr: a, TLS: o, ClientID: clientID, Username: u.Username, Timeout: timeout}
		if u.Protocol == "5" {
			req.Version = 5 // speak as the gateway will
		}
		if u.PasswordFile != "" {
			pw, err := tlsx.ReadPassword(u.PasswordFile)
			if err != nil {
				fmt.Fprintf(stderr, "edgegw tls-check: upstream.password_file: %v\n", err)
				return exitConfig
			}
			req.Password = pw
		}
		if len(u.Address) > 1 {
			fmt.Fprintf(stdout, "== %s\n", a)
		}
		if c := tlsCheck(req, stdout); c != exitOK {
			code = c
		}
	}
	return code
}
