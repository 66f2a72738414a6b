//! Plain f64 loops, written as the definition (backward passes scatter, unlike the kernels).

use super::Conv2d;

fn out_hw(xs: [usize; 4], ws: [usize; 4], p: &Conv2d) -> (usize, usize) {
    let o = super::out_shape(&xs, &ws, p).expect("reference: invalid conv2d shapes");
    (o[2], o[3])
}

/// Calls f(x index, w index, y index) for every multiply-add of the convolution.
fn each_tap(xs: [usize; 4], ws: [usize; 4], p: &Conv2d, mut f: impl FnMut(usize, usize, usize)) {
    let [n, cin, h, w] = xs;
    let [cout, cin_g, kh, kw] = ws;
    let (ho, wo) = out_hw(xs, ws, p);
    let cout_g = cout / p.groups;
    for b in 0..n {
        for co in 0..cout {
            let g = co / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((b * cout + co) * ho + oy) * wo + ox;
                    for cl in 0..cin_g {
                        let ci = g * cin_g + cl;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * p.stride + ky * p.dilation) as isize - p.padding as isize;
                                let ix = (ox * p.stride + kx * p.dilation) as isize - p.padding as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * cin + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((co * cin_g + cl) * kh + ky) * kw + kx;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn forward(x: &[f64], xs: [usize; 4], w: &[f64], ws: [usize; 4], p: &Conv2d) -> Vec<f64> {
    let (ho, wo) = out_hw(xs, ws, p);
    let mut y = vec![0.0; xs[0] * ws[0] * ho * wo];
    each_tap(xs, ws, p, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// Gradient of sum(dy * forward(x, w)) with respect to x (shape xs).
pub fn backward_input(dy: &[f64], xs: [usize; 4], w: &[f64], ws: [usize; 4], p: &Conv2d) -> Vec<f64> {
    let mut dx = vec![0.0; xs.iter().product()];
    each_tap(xs, ws, p, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// Gradient of sum(dy * forward(x, w)) with respect to w (shape ws).
pub fn backward_weight(x: &[f64], xs: [usize; 4], dy: &[f64], ws: [usize; 4], p: &Conv2d) -> Vec<f64> {
    let mut dw = vec![0.0; ws.iter().product()];
    each_tap(xs, ws, p, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
    dw
}
