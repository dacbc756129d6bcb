package gateway

import (
	"context"
	"time"

	"github.com/edgegw/edgegw/internal/tlsx"
)

// certWarnDays is how early the gateway starts warning that a certificate
// (its own client certificate or a CA it trusts) is about to expire.
const certWarnDays = 30

// watchCerts checks the upstream certificates' lifetimes now and twice a day,
// warns when one expires within certWarnDays, and keeps the days left for
// Status and metrics. Replaced files are read again each time.
func (g *Gateway) watchCerts(ctx context.Context, o tlsx.Options) {
	check := func() {
		infos, err := tlsx.Expiry(o)
		if err != nil {
			g.log.Warn("cannot read the certificates to check their expiry", "component", "tls", "error", err)
			return
		}
		g.mu.Lock()
		g.certs = infos
		g.mu.Unlock()
		for _, c := range infos {
			switch {
			case c.DaysLeft < 0:
				g.log.Error("certificate has expired; the upstream will refuse the connection until it is replaced", "component", "tls", "file", c.Path, "subject", c.Subject, "expired", c.NotAfter.Format(time.DateOnly))
			case c.DaysLeft < certWarnDays:
				g.log.Warn("certificate expires soon; replace the file (it is picked up on the next reconnect, no restart needed)", "component", "tls", "file", c.Path, "subject", c.Subject, "days_left", c.DaysLeft, "expires", c.NotAfter.Format(time.DateOnly))
			}
		}
	}
	check()
	t := time.NewTicker(12 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
