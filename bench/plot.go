package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	stddraw "image/draw"
	"image/png"
	"io"
	"math"
	"os"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	// gonum/plot: a well-kept plotting library (log axes, tiled plots, PNG
	// output in pure Go), far better than drawing our own.
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// lineStyle is a row's colour and dashes, the same in every panel: the C
// legs in greens (c->c solid, a mixed pair dashed), the C futex dotted.
func lineStyle(r *Result) (color.Color, []vg.Length) {
	dash := []vg.Length{vg.Points(4), vg.Points(3)}
	dot := []vg.Length{vg.Points(1.5), vg.Points(2)}
	transport, mode := r.Transport, r.Mode
	switch s := r.sides(); {
	case transport == string(CFramebus) && mode == string(Spin):
		return color.RGBA{R: 0x70, G: 0xb0, B: 0x20, A: 0xff}, nil
	case transport == string(CFramebus):
		return color.RGBA{R: 0x10, G: 0x80, B: 0x30, A: 0xff}, nil
	case transport == string(Framebus) && s == GoC:
		return color.RGBA{R: 0x1f, G: 0x5f, B: 0xd0, A: 0xff}, dash
	case transport == string(Framebus) && s == CGo:
		return color.RGBA{R: 0x10, G: 0x80, B: 0x30, A: 0xff}, dash
	case transport == string(Futex) && s == CC:
		return color.Black, dot
	}
	switch transport + "/" + mode {
	case "framebus/plain":
		return color.RGBA{R: 0x1f, G: 0x5f, B: 0xd0, A: 0xff}, nil
	case "framebus/copy":
		return color.RGBA{R: 0x4f, G: 0xa8, B: 0xf0, A: 0xff}, dash
	case "framebus/spin":
		return color.RGBA{R: 0x8e, G: 0x3c, B: 0xc8, A: 0xff}, nil
	case "futex/":
		return color.Black, nil
	case "memcpy/":
		return color.RGBA{R: 0x90, G: 0x90, B: 0x90, A: 0xff}, dash
	case "uds/":
		return color.RGBA{R: 0xe8, G: 0x80, B: 0x10, A: 0xff}, nil
	case "pipe/":
		return color.RGBA{R: 0xc8, G: 0x20, B: 0x20, A: 0xff}, nil
	}
	return color.RGBA{R: 0x20, G: 0x90, B: 0x40, A: 0xff}, nil
}

// percentileXs are the plotted points of a latency distribution: x is
// -log10(1 - q), so 1 is the 90th percentile, 2 the 99th, 3 the 99.9th.
func percentileLine(h *hdrhistogram.Histogram) plotter.XYs {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	top := math.Min(math.Log10(float64(n)), 5) // no tail beyond what the samples can tell
	var xys plotter.XYs
	for x := 0.0; x <= top+1e-9; x += 0.02 {
		q := 100 * (1 - math.Pow(10, -x))
		v := float64(h.ValueAtQuantile(q)) / 1e3
		xys = append(xys, plotter.XY{X: x, Y: math.Max(v, 0.01)})
	}
	xys = append(xys, plotter.XY{X: top, Y: math.Max(float64(h.Max())/1e3, 0.01)})
	return xys
}

// percentileTicks label the x axis in percentiles (50 unlabelled: it
// would run into 0).
func percentileTicks(_, hi float64) []plot.Tick {
	t := []plot.Tick{{Value: math.Log10(2)}}
	for i, l := range []string{"0", "90", "99", "99.9", "99.99", "99.999"} {
		if float64(i) <= hi+1e-9 {
			t = append(t, plot.Tick{Value: float64(i), Label: l})
		}
	}
	return t
}

// latencyTicks are log ticks labelled 1, 10, 100, 1k, 10k, 100k, 1M (us).
func latencyTicks(lo, hi float64) []plot.Tick {
	t := plot.LogTicks{}.Ticks(lo, hi)
	for i := range t {
		if t[i].Label == "" {
			continue
		}
		switch v := t[i].Value; {
		case v >= 1e6:
			t[i].Label = fmt.Sprintf("%gM", v/1e6)
		case v >= 1e3:
			t[i].Label = fmt.Sprintf("%gk", v/1e3)
		default:
			t[i].Label = fmt.Sprintf("%g", v)
		}
	}
	return t
}

// WritePlot draws the latency distributions (publish-to-wake, latency_us)
// of every scenario, one panel each, one line per transport, as a PNG.
func (rep *Report) WritePlot(w io.Writer) error {
	var order []string
	rows := map[string][]*Result{}
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Skipped || r.lat == nil || r.lat.TotalCount() == 0 {
			continue
		}
		k := r.scenarioKey()
		if _, ok := rows[k]; !ok {
			order = append(order, k)
		}
		rows[k] = append(rows[k], r)
	}
	if len(order) == 0 {
		return fmt.Errorf("no latency distribution to plot")
	}
	cols := min(len(order), 2)
	nrows := (len(order) + cols - 1) / cols
	plots := make([][]*plot.Plot, nrows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, k := range order {
		p := plot.New()
		rs := rows[k]
		p.Title.Text = rs[0].ScenarioName()
		p.Title.TextStyle.Font.Size = vg.Points(10)
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = "publish-to-wake, us"
		p.X.Tick.Marker = plot.TickerFunc(percentileTicks)
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.TickerFunc(latencyTicks)
		p.X.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		p.Add(plotter.NewGrid())
		top := 0.0
		for _, r := range rs {
			l, err := plotter.NewLine(percentileLine(r.lat))
			if err != nil {
				return err
			}
			l.Color, l.Dashes = lineStyle(r)
			l.Width = vg.Points(1.5)
			name := rowName(r)
			if r.Transport == string(Memcpy) {
				name += " (copy time)"
			}
			p.Add(l)
			p.Legend.Add(name, l)
			top = math.Max(top, float64(r.lat.Max())/1e3)
		}
		// Head room above the highest line for the legend.
		p.Y.Max = top * math.Pow(10, 0.25*float64(len(rs))+0.3)
		plots[i/cols][i%cols] = p
	}
	const tileW, tileH = 5.2 * vg.Inch, 3.6 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(cols)*tileW, vg.Length(nrows)*tileH), vgimg.UseDPI(80))
	dc := draw.New(img)
	t := draw.Tiles{Rows: nrows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for j := range plots {
		for i, p := range plots[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	// A line plot needs few colours: a paletted PNG is a third of the size
	// of the RGBA one, small enough to keep in the repository.
	src := img.Image()
	pal := image.NewPaletted(src.Bounds(), palette.Plan9)
	stddraw.Draw(pal, pal.Bounds(), src, src.Bounds().Min, stddraw.Src)
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	return enc.Encode(w, pal)
}

// WritePlotFile writes the plot to a PNG file.
func (rep *Report) WritePlotFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WritePlot(f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
