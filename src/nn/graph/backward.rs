//! The tape's backward pass: gradients of every recorded node, in reverse, into the store.

use super::*;

impl Graph<'_> {
    fn add_grad(&mut self, v: Var, g: Tensor) -> Result<()> {
        match &self.grads[v.0] {
            None => self.grads[v.0] = Some(g),
            Some(acc) => elementwise::accumulate(self.step.as_mut().unwrap(), &g, acc)?,
        }
        Ok(())
    }

    /// Gradient of parameter `name` via `launch`, summed into the store's grad if this
    /// accumulation round already wrote one.
    fn param_grad(&mut self, name: &str, launch: impl FnOnce(&mut Step, &Tensor) -> Result<()>) -> Result<()> {
        if self.is_frozen(name) {
            return Ok(());
        }
        let store = self.store.as_mut().unwrap();
        let (target, fresh) = store.grad_target(name);
        let step = self.step.as_mut().unwrap();
        launch(step, &target)?;
        if !fresh {
            let acc = store.get(name).unwrap().grad.clone();
            elementwise::accumulate(step, &target, &acc)?;
        }
        Ok(())
    }

    fn new_like(&self, v: Var) -> Tensor {
        Tensor::empty(self.step.as_ref().unwrap().gpu(), &self.vals[v.0].shape)
    }

    /// Walk the tape in reverse: gradients of every parameter the forward used end up in the
    /// store (see `ParamStore::grad_target`).
    pub fn backward(&mut self) -> Result<()> {
        if !self.training() {
            return Err(Error::Invalid("backward needs a graph in training mode".into()));
        }
        let tape = std::mem::take(&mut self.tape);
        for node in tape.iter().rev() {
            let y = match node {
                Node::Conv { y, .. } | Node::Bn { y, .. } | Node::Relu { y, .. } | Node::Pool { y, .. } => *y,
                Node::Gap { y, .. } | Node::Linear { y, .. } | Node::Add { y, .. } | Node::Concat { y, .. } | Node::Crop { y, .. } => *y,
                Node::Softmax { w, .. } => *w,
                Node::Mix { y, .. } => *y,
            };
            let Some(dy) = self.grads[y.0].take() else { continue };
            match node {
                Node::Conv { x, w, p, relu, .. } => {
                    let (xt, wt) = (self.t(*x), self.store.as_ref().unwrap().get(w).unwrap().value.clone());
                    self.param_grad(w, |s, dw| conv2d::backward_weight_with(s, &xt, &dy, p, *relu, dw))?;
                    if self.needs_grad(*x) {
                        let dx = self.new_like(*x);
                        conv2d::backward_input_with(self.step.as_mut().unwrap(), &dy, &wt, p, relu.then_some(&xt), &dx)?;
                        self.add_grad(*x, dx)?;
                    }
                }
                Node::Bn { x, affine, mean, inv_std, .. } => {
                    let xt = self.t(*x);
                    let dx = self.new_like(*x);
                    let c = xt.shape[1];
                    let gpu = self.step.as_ref().unwrap().gpu().clone();
                    match affine {
                        Some((gn, bn)) => {
                            let gamma = self.store.as_ref().unwrap().get(gn).unwrap().value.clone();
                            let (dg, db) = (Tensor::empty(&gpu, &[c]), Tensor::empty(&gpu, &[c]));
                            batchnorm::backward(self.step.as_mut().unwrap(), &xt, &dy, Some(&gamma), mean, inv_std, &dx, Some(&dg), Some(&db))?;
                            let copy = |s: &mut Step, src: &Tensor, dst: &Tensor| {
                                s.copy(&src.buf, 0, &dst.buf, 0, 4 * c as u64);
                                Ok(())
                            };
                            self.param_grad(gn, |s, t| copy(s, &dg, t))?;
                            self.param_grad(bn, |s, t| copy(s, &db, t))?;
                        }
                        None => batchnorm::backward(self.step.as_mut().unwrap(), &xt, &dy, None, mean, inv_std, &dx, None, None)?,
                    }
                    self.add_grad(*x, dx)?;
                }
                Node::Relu { x, .. } => {
                    let (dx, xt) = (self.new_like(*x), self.t(*x));
                    elementwise::relu_backward(self.step.as_mut().unwrap(), &xt, &dy, &dx)?;
                    self.add_grad(*x, dx)?;
                }
                Node::Pool { x, p, argmax, .. } => {
                    let (dx, xt) = (self.new_like(*x), self.t(*x));
                    match argmax {
                        Some(a) => pool::backward_with_argmax(self.step.as_mut().unwrap(), &xt, &dy, a, p, &dx)?,
                        None => pool::backward(self.step.as_mut().unwrap(), &xt, &dy, p, &dx)?,
                    }
                    self.add_grad(*x, dx)?;
                }
                Node::Gap { x, .. } => {
                    let dx = self.new_like(*x);
                    pool::global_avg_pool_backward(self.step.as_mut().unwrap(), &dy, &dx)?;
                    self.add_grad(*x, dx)?;
                }
                Node::Linear { x, w, b, .. } => {
                    let (xt, wt) = (self.t(*x), self.store.as_ref().unwrap().get(w).unwrap().value.clone());
                    let db_t = Tensor::empty(self.step.as_ref().unwrap().gpu(), &[wt.shape[0]]);
                    self.param_grad(w, |s, dw| linear::backward_weight(s, &xt, &dy, dw, Some(&db_t)))?;
                    let n = 4 * db_t.numel() as u64;
                    self.param_grad(b, |s, db| {
                        s.copy(&db_t.buf, 0, &db.buf, 0, n);
                        Ok(())
                    })?;
                    let dx = self.new_like(*x);
                    linear::backward_input(self.step.as_mut().unwrap(), &dy, &wt, &dx)?;
                    self.add_grad(*x, dx)?;
                }
                Node::Add { a, b, .. } => {
                    // The sum passes its gradient to both sides unchanged.
                    self.add_grad(*a, dy.clone())?;
                    let db = self.new_like(*b);
                    self.step.as_mut().unwrap().copy(&dy.buf, 0, &db.buf, 0, 4 * dy.numel() as u64);
                    self.add_grad(*b, db)?;
                }
                Node::Concat { xs, .. } => {
                    let parts: Vec<Tensor> = xs.iter().map(|&v| self.new_like(v)).collect();
                    let refs: Vec<&Tensor> = parts.iter().collect();
                    concat::split_channels(self.step.as_mut().unwrap(), &dy, &refs)?;
                    for (v, g) in xs.iter().zip(parts) {
                        self.add_grad(*v, g)?;
                    }
                }
                Node::Crop { x, c, .. } => {
                    let dx = self.new_like(*x);
                    crop::backward(self.step.as_mut().unwrap(), &dy, c, &dx)?;
                    self.add_grad(*x, dx)?;
                }
                Node::Softmax { alpha, w } => {
                    let wt = self.t(*w);
                    self.param_grad(alpha, |s, da| mix::softmax_rows_backward(s, &wt, &dy, da))?;
                }
                Node::Mix { xs, w, .. } => {
                    let wt = self.t(*w);
                    if self.needs_grad(*w) && self.grads[w.0].is_none() {
                        // Every term adds its weight's gradient in; weights of ops this
                        // forward never ran (`none`) stay zero.
                        let dw = self.new_like(*w);
                        elementwise::fill(self.step.as_mut().unwrap(), &dw, 0.0)?;
                        self.grads[w.0] = Some(dw);
                    }
                    for &(x, i) in xs {
                        if let Some(dw) = self.grads[w.0].clone().filter(|_| self.needs_grad(*w)) {
                            let xt = self.t(x);
                            mix::weighted_dot(self.step.as_mut().unwrap(), &xt, &dy, &dw, i, true)?;
                        }
                        if !self.needs_grad(x) {
                            continue;
                        }
                        // Added straight into the gradient x already has, if any.
                        match self.grads[x.0].clone() {
                            Some(acc) => mix::weighted_add(self.step.as_mut().unwrap(), &dy, &wt, i, &acc, true)?,
                            None => {
                                let dx = self.new_like(x);
                                mix::weighted_add(self.step.as_mut().unwrap(), &dy, &wt, i, &dx, false)?;
                                self.grads[x.0] = Some(dx);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Inputs (data) need no gradient: only values produced by a node do.
    fn needs_grad(&self, v: Var) -> bool {
        !self.inputs.contains(&v.0)
    }
}
