/* plot.c - line charts as a hand-written SVG file (`nndc train --plot`).
 *
 * plot_write_svg stacks the panels vertically, each a frame with its title,
 * "nice" ticks (1, 2 or 5 times a power of ten) on both axes, one polyline
 * per series (a circle at each point when the series asks for markers) and a
 * legend.  The text is XML-escaped; the file is plain SVG 1.1 that any
 * browser shows, written atomically (rt_write_atomic) so a reader never sees
 * a half-drawn chart.  Non-finite points are skipped.  Returns 0, or -1
 * after reporting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

enum { PW = 720, PH = 300, ML = 70, MR = 170, MT = 34, MB = 44 };   /* panel size and margins, px */

static void put_escaped(Buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '<') buf_puts(b, "&lt;");
    else if (*s == '>') buf_puts(b, "&gt;");
    else if (*s == '&') buf_puts(b, "&amp;");
    else if (*s == '"') buf_puts(b, "&quot;");
    else buf_put(b, s, 1);
  }
}

/* The tick step for the range [lo, hi]: about five ticks. */
static double nice_step(double lo, double hi) {
  double raw = (hi - lo) / 5, p = pow(10, floor(log10(raw))), f = raw / p;
  return p * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
}

/* The data range of a panel (x from 0 when positive), y widened to whole
 * ticks; an empty or flat range gets a unit around it. */
static void panel_range(const PlotPanel *p, double *x0, double *x1, double *y0, double *y1) {
  *x0 = *y0 = INFINITY, *x1 = *y1 = -INFINITY;
  for (int s = 0; s < p->nseries; s++)
    for (int i = 0; i < p->series[s].n; i++) {
      double x = p->series[s].x[i], y = p->series[s].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      *x0 = fmin(*x0, x), *x1 = fmax(*x1, x), *y0 = fmin(*y0, y), *y1 = fmax(*y1, y);
    }
  if (!(*x0 <= *x1)) *x0 = 0, *x1 = 1;
  if (*x0 > 0) *x0 = 0;   /* the x axis starts at 0 (epochs, steps) */
  if (!(*y0 <= *y1)) *y0 = 0, *y1 = 1;
  if (*x1 - *x0 < 1e-12) *x0 -= 0.5, *x1 += 0.5;
  if (*y1 - *y0 < 1e-12 * fmax(1, fabs(*y0))) *y0 -= 0.5 * fmax(1e-3, fabs(*y0)), *y1 += 0.5 * fmax(1e-3, fabs(*y1));
  double sy = nice_step(*y0, *y1);
  *y0 = floor(*y0 / sy) * sy, *y1 = ceil(*y1 / sy) * sy;
}

static void put_axes(Buf *b, double oy, double x0, double x1, double y0, double y1, const char *xlabel) {
  double w = PW - ML - MR, h = PH - MT - MB;
  buf_printf(b, "<rect x=\"%d\" y=\"%.1f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n", ML,
             oy + MT, w, h);
  double sx = nice_step(x0, x1), sy = nice_step(y0, y1);
  for (double t = ceil(x0 / sx - 1e-9) * sx; t <= x1 + 1e-9 * sx; t += sx) {
    double px = ML + (t - x0) / (x1 - x0) * w;
    buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", px, oy + MT, px,
               oy + MT + h);
    buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", px, oy + MT + h + 16,
               fabs(t) < 1e-12 * sx ? 0.0 : t);
  }
  for (double t = y0; t <= y1 + 1e-9 * sy; t += sy) {
    double py = oy + MT + h - (t - y0) / (y1 - y0) * h;
    buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", ML, py, ML + w, py);
    buf_printf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", ML - 6, py + 4,
               fabs(t) < 1e-12 * sy ? 0.0 : t);
  }
  buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", ML + w / 2, oy + PH - 8);
  put_escaped(b, xlabel);
  buf_puts(b, "</text>\n");
}

static void put_series(Buf *b, const PlotSeries *s, double oy, double x0, double x1, double y0, double y1) {
  double w = PW - ML - MR, h = PH - MT - MB;
  buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"", s->color,
             s->markers ? "2" : "1.2");
  for (int i = 0; i < s->n; i++)
    if (isfinite(s->x[i]) && isfinite(s->y[i]))
      buf_printf(b, "%.1f,%.1f ", ML + (s->x[i] - x0) / (x1 - x0) * w, oy + MT + h - (s->y[i] - y0) / (y1 - y0) * h);
  buf_puts(b, "\"/>\n");
  for (int i = 0; s->markers && i < s->n; i++)
    if (isfinite(s->x[i]) && isfinite(s->y[i]))
      buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", ML + (s->x[i] - x0) / (x1 - x0) * w,
                 oy + MT + h - (s->y[i] - y0) / (y1 - y0) * h, s->color);
  if (s->markers) buf_puts(b, "\n");
}

static void put_panel(Buf *b, const PlotPanel *p, double oy) {
  double x0, x1, y0, y1;
  panel_range(p, &x0, &x1, &y0, &y1);
  buf_printf(b, "<g>\n<text x=\"%d\" y=\"%.1f\" font-weight=\"bold\">", ML, oy + 22);
  put_escaped(b, p->title);
  buf_puts(b, "</text>\n");
  put_axes(b, oy, x0, x1, y0, y1, p->xlabel);
  for (int s = 0; s < p->nseries; s++) {
    put_series(b, &p->series[s], oy, x0, x1, y0, y1);
    double ly = oy + MT + 12 + 18 * s;
    buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>", PW - MR + 12,
               ly - 4, PW - MR + 32, ly - 4, p->series[s].color);
    buf_printf(b, "<text x=\"%d\" y=\"%.1f\">", PW - MR + 38, ly);
    put_escaped(b, p->series[s].label);
    buf_puts(b, "</text>\n");
  }
  buf_puts(b, "</g>\n");
}

int plot_write_svg(Diag *d, const char *path, const char *title, const PlotPanel *panels, int npanels) {
  Buf b = {0};
  int H = 30 + PH * (npanels ? npanels : 1);
  buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                 "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<title>", PW, H, PW, H);
  put_escaped(&b, title);
  buf_printf(&b, "</title>\n<text x=\"%d\" y=\"20\" font-size=\"14\">", ML);
  put_escaped(&b, title);
  buf_puts(&b, "</text>\n");
  for (int i = 0; i < npanels; i++) put_panel(&b, &panels[i], 30 + (double)PH * i);
  buf_puts(&b, "</svg>\n");
  const void *part[1] = {b.s};
  size_t len[1] = {b.len};
  int rc = rt_write_atomic(d, path, part, len, 1);
  free(b.s);
  return rc;
}
