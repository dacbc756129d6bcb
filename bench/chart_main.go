package main

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"github.com/edgegw/edgegw/bench/chart"
)

var kindColor = map[string]color.RGBA{kEdgegw: chart.Green, kMosq: chart.Orange, kMosqDflt: chart.Red, kDirect: chart.Grey,
	kEdgegwDflt: chart.Green, kEdgegwDisk: chart.Blue, kMosqAuto: chart.Red}
var kindLabel = map[string]string{kEdgegw: "edgegw", kMosq: "mosquitto q=0", kMosqDflt: "mosquitto q=1000", kDirect: "direct",
	kEdgegwDflt: "edgegw", kEdgegwDisk: "edgegw disk", kMosqAuto: "mosq autosave"}

// writeChart draws the main figures (medians) to path.
func writeChart(path string, res *results) error {
	bars := func(metric string, kinds []string, scale float64, format func(float64) string) []chart.Bar {
		var out []chart.Bar
		for _, k := range kinds {
			med, _, _, _ := stat(res.v[metric][k])
			v := med * scale
			t := "N/A"
			if !math.IsNaN(v) {
				t = format(v)
			}
			out = append(out, chart.Bar{Label: kindLabel[k], Value: v, Text: t, Color: kindColor[k]})
		}
		return out
	}
	kilo := func(v float64) string { return fmt.Sprintf("%.1fK", v/1000) }
	pct := func(v float64) string { return fmt.Sprintf("%.1f%%", v) }
	mb := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	var panels []chart.Panel
	if res.v["steady.msgs"] != nil {
		panels = append(panels, chart.Panel{Title: "1 steady QoS 1: msg/s upstream", Bars: bars("steady.msgs", []string{kEdgegw, kMosq, kMosqDflt, kDirect}, 1, kilo)})
	}
	if v := res.v["outage.delivered"]; v != nil {
		panels = append(panels, chart.Panel{Title: "2 outage: % of acked delivered", Bars: pctBars(res, "outage.delivered", "outage.lost", []string{kEdgegw, kMosq, kMosqDflt}, pct)})
		panels = append(panels, chart.Panel{Title: "2 outage: peak RSS MiB", Bars: bars("outage.rss.peak", []string{kEdgegw, kMosq, kMosqDflt}, 1, mb)})
	}
	if res.v["crash.delivered"] != nil {
		panels = append(panels, chart.Panel{Title: "3 kill -9: % of acked delivered", Bars: pctBars(res, "crash.delivered", "crash.lost", []string{kEdgegw, kMosq}, pct)})
	}
	if hasAny(res, "wear.up.20") {
		panels = append(panels, chart.Panel{Title: "7 wear at 20 msg/s, link up: B/B", Bars: bars("wear.up.20", wearKinds, 1, mb)})
	}
	if hasAny(res, "cpu.200") {
		us := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		panels = append(panels, chart.Panel{Title: "8 CPU per msg at 200 msg/s, us", Bars: bars("cpu.200", cpuKinds, 1, us)})
	}
	if len(panels) == 0 {
		return nil
	}
	b, err := chart.Draw(panels, 2)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func pctBars(res *results, delivered, lost string, kinds []string, format func(float64) string) []chart.Bar {
	var out []chart.Bar
	for _, k := range kinds {
		d, _, _, _ := stat(res.v[delivered][k])
		l, _, _, _ := stat(res.v[lost][k])
		v := 100 * d / (d + l)
		t := "N/A"
		if !math.IsNaN(v) {
			t = format(v)
		}
		out = append(out, chart.Bar{Label: kindLabel[k], Value: v, Text: t, Color: kindColor[k]})
	}
	return out
}
