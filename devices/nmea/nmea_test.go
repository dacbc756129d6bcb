package nmea

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
)

// Real sentences: the NMEA 0183 reference examples and the u-blox protocol
// specification's examples (checksums as published).
const (
	ggaRef   = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
	rmcRef   = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
	ggaUblox = "$GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*5B"
	rmcUblox = "$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57"
	ggaNoFix = "$GPGGA,,,,,,0,00,99.99,,,,,,*48"
	rmcNoFix = "$GPRMC,,V,,,,,,,,,,N*53"
	gsv      = "$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74"
)

func fields(r devices.Reading) string {
	var s []string
	for _, f := range r.Fields {
		s = append(s, fmt.Sprintf("%s=%v%s", f.Name, f.Value, f.Unit))
	}
	return strings.Join(s, " ")
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line, want, reason string
	}{
		{ggaRef, "sentence=GGA utc_time=12:35:19 lat=48.1173° lon=11.5166667° fix_quality=1 satellites=8 hdop=0.9 altitude=545.4m", ""},
		{rmcRef, "sentence=RMC utc=1994-03-23T12:35:19.000Z valid=true lat=48.1173° lon=11.5166667° speed=41.485km/h course=84.4°", ""},
		{ggaUblox, "sentence=GGA utc_time=09:27:25.00 lat=47.2852332° lon=8.565265° fix_quality=1 satellites=8 hdop=1.01 altitude=499.6m", ""},
		{rmcUblox, "sentence=RMC utc=2002-12-09T08:35:59.000Z valid=true lat=47.2852395° lon=8.5652537° speed=0.007km/h course=77.52°", ""},
		{ggaNoFix, "sentence=GGA fix_quality=0 satellites=0 hdop=99.99", ""},
		{rmcNoFix, "sentence=RMC valid=false", ""},
		{Sentence("GNGGA,001043.00,3338.5145,S,07033.3510,W,2,12,0.8,700.0,M,30.0,M,,"), "sentence=GGA utc_time=00:10:43.00 lat=-33.6419083° lon=-70.55585° fix_quality=2 satellites=12 hdop=0.8 altitude=700m", ""},
		{strings.Replace(ggaRef, "*47", "*48", 1), "", BadChecksum},
		{strings.TrimSuffix(ggaRef, "*47"), "", MissingChecksum},
		{"GPGGA,123519*47", "", BadFrame},
		{"$GPGGA,123519*ZZ", "", BadFrame},
		{gsv, "", ""},
		{Sentence("GPGGA,123519,4807.038,N,01131.000,E,9,08,0.9,545.4,M,46.9,M,,"), "", BadSentence},
		{Sentence("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "", BadSentence},
		{Sentence("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "", BadSentence},
		{Sentence("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W"), "", BadSentence},
		{Sentence("GPRMC,123519,Q,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"), "", BadSentence},
		{Sentence("GPGGA,123519,4807.038,N"), "", BadSentence},
		{Sentence("GPGGA,256019,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "", BadSentence},
	} {
		r, ok, err := Parse(tc.line)
		switch {
		case tc.reason != "":
			if err == nil || Reason(err) != tc.reason {
				t.Errorf("%s: err %v, want reason %s", tc.line, err, tc.reason)
			}
		case tc.want == "":
			if ok || err != nil {
				t.Errorf("%s: ok=%v err=%v, want ignored", tc.line, ok, err)
			}
		default:
			if err != nil || !ok || fields(r) != tc.want {
				t.Errorf("%s:\n got %s (err %v)\nwant %s", tc.line, fields(r), err, tc.want)
			}
		}
	}
}

// buildStream: a receiver's output as the driver meets it: opened mid-line,
// fix and no-fix epochs, GSV and VTG lines, a bad checksum, a line without
// checksum, binary garbage, an overlong line, CR LF or bare LF endings.
func buildStream() ([]byte, serialtest.Golden) {
	var b strings.Builder
	var want []devices.Reading
	counts := devices.Stats{}
	good := func(line string) {
		r, ok, err := Parse(line)
		if !ok || err != nil {
			panic(line)
		}
		b.WriteString(line + "\r\n")
		want = append(want, r)
	}
	b.WriteString("4.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n") // opened mid-line
	counts[BadFrame]++
	good(ggaNoFix)
	good(rmcNoFix)
	b.WriteString(gsv + "\r\n")
	counts[Ignored]++
	good(ggaRef)
	good(rmcRef)
	b.WriteString(strings.Replace(rmcRef, "022.4", "022.5", 1) + "\r\n") // a bit flipped on the line
	counts[BadChecksum]++
	good(ggaUblox)
	b.WriteString("\x00\xff\xfe garbage \x13\x11\n")
	counts[BadFrame]++
	good(rmcUblox)
	b.WriteString("$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48\r\n")
	counts[Ignored]++
	b.WriteString("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,\r\n")
	counts[MissingChecksum]++
	b.WriteString("$" + strings.Repeat("X", 300) + "\r\n")
	counts[BadFrame]++
	for i := range 20 {
		good(Sentence(fmt.Sprintf("GNGGA,1200%02d.00,4717.%05d,N,00833.%05d,E,1,%02d,0.9,%d.5,M,48.0,M,,", i, 11399+i*7, 91590+i*3, 6+i%6, 490+i)))
		good(Sentence(fmt.Sprintf("GNRMC,1200%02d.00,A,4717.%05d,N,00833.%05d,E,%d.%03d,77.52,221126,,,A", i, 11399+i*7, 91590+i*3, i%3, i*37)))
	}
	return []byte(b.String()), serialtest.MakeGolden(want, counts)
}

func TestParserSplits(t *testing.T) {
	stream, want := buildStream()
	for _, step := range []int{1, 5, 80, len(stream)} {
		c := new(serialport.Counters)
		p := &Parser{Counts: c}
		var got []devices.Reading
		for i := 0; i < len(stream); i += step {
			p.Feed(stream[i:min(i+step, len(stream))], func(r devices.Reading) { got = append(got, r) })
		}
		if g := serialtest.MakeGolden(got, c.Stats()).JSON(); !bytes.Equal(g, want.JSON()) {
			t.Fatalf("step %d:\n%s\nwant\n%s", step, g, want.JSON())
		}
	}
}

func TestGoldenStreamOnPTY(t *testing.T) {
	stream, want := buildStream()
	serialtest.CheckGolden(t, "testdata/stream.bin", stream)
	serialtest.CheckGolden(t, "testdata/expected.json", want.JSON())
	path, dev := serialtest.NewPTY(t)
	drv, _ := devices.Lookup(Type)
	d, err := drv.New(devices.Env{Name: "gps"}, serialtest.Decoder(fmt.Sprintf("port = %q\nbaud = 4800", path)))
	if err != nil {
		t.Fatal(err)
	}
	run := serialtest.Start(t, d)
	go serialtest.WriteSplit(dev, stream, rand.New(rand.NewPCG(0, 183)))
	got := run.Take(t, len(want.Readings), 10*time.Second)
	if g := serialtest.MakeGolden(got, d.(devices.Counter).Counters()).JSON(); !bytes.Equal(g, want.JSON()) {
		t.Fatalf("got\n%s\nwant\n%s", g, want.JSON())
	}
	if err := run.Stop(t); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: any line never panics, and a reading only comes from a line
// whose checksum is right.
func FuzzParse(f *testing.F) {
	for _, s := range []string{ggaRef, rmcRef, ggaUblox, rmcUblox, ggaNoFix, rmcNoFix, gsv, "$GPGGA,*00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok, err := Parse(line)
		if !ok {
			return
		}
		if err != nil {
			t.Fatal("ok with error")
		}
		star := strings.LastIndexByte(line, '*')
		if star < 1 || fmt.Sprintf("%02X", Checksum(line[1:star])) != strings.ToUpper(line[star+1:]) {
			t.Fatalf("reading %v from a line with a wrong checksum: %q", r, line)
		}
	})
}
