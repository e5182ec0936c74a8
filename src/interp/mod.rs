//! The interpreter: executes a model's graph on concrete tensors.
//!
//! [`Interpreter::new`] resolves every node to an executable op up front, so an unsupported op,
//! attribute or opset is reported before anything runs, naming node, op, opset and attribute.
//! A run walks a fixed topological plan and frees each intermediate tensor right after its last
//! consumer. [`Observer`]s see every tensor produced (for calibration); the interpreter keeps no
//! per-batch state, so observer memory is whatever the observer itself keeps.
//!
//! Batches: [`Interpreter::run_batched`] splits inputs along axis 0 into chunks (the model's
//! fixed batch size when the file fixes it, otherwise halves) and runs the chunks on the rayon
//! pool. The split depends only on the batch size, never on the thread count, so results are
//! deterministic.
//!
//! Profiling: [`Interpreter::run_profiled`] returns the wall time spent per op type; setting the
//! environment variable `MFQ_PROFILE=1` makes every run print that table to stderr.

use crate::ir::{Dim, IrError, Model, NodeId, ValueId};
use crate::ops::{self, Op, OpError};
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Errors building or running the interpreter.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("node {node}: op {domain}{op} (opset {opset}): {error}")]
    Build {
        node: String,
        op: String,
        domain: String,
        opset: i64,
        error: Box<OpError>,
    },
    #[error("node {node}: domain '{domain}' of op {op} has no opset import")]
    NoOpset {
        node: String,
        op: String,
        domain: String,
    },
    #[error("node {node} ({op}) failed: {error}")]
    Eval {
        node: String,
        op: String,
        error: Box<OpError>,
    },
    #[error("node {node} ({op}) produced {got} outputs, expected {expected}")]
    OutputCount {
        node: String,
        op: String,
        got: usize,
        expected: usize,
    },
    #[error("missing input '{0}'")]
    MissingInput(String),
    #[error("'{0}' is not an input of the model (inputs: {1})")]
    UnknownInput(String, String),
    #[error("input '{name}': expected dtype {expected}, got {got}")]
    InputDtype {
        name: String,
        expected: DType,
        got: DType,
    },
    #[error("input '{name}': expected shape {expected}, got {got:?}")]
    InputShape {
        name: String,
        expected: String,
        got: Vec<usize>,
    },
    #[error("inputs disagree on the batch size: '{a}' has {na}, '{b}' has {nb}")]
    BatchMismatch {
        a: String,
        na: usize,
        b: String,
        nb: usize,
    },
    #[error("graph output '{0}' was not computed")]
    MissingOutput(String),
    #[error(transparent)]
    Graph(#[from] IrError),
}

/// Sees every tensor computed during a run (graph inputs included), in execution order.
pub trait Observer {
    /// Called once per produced tensor. `name` is the tensor's name in the graph.
    fn observe(&mut self, value: ValueId, name: &str, tensor: &Tensor);
}

struct Step {
    node: NodeId,
    label: String,
    op_type: String,
    op: Box<dyn Op>,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    /// Values whose last use is this step.
    free: Vec<ValueId>,
    /// Execution-time fusion, used only when no observer watches the run: this step's op with
    /// the following Relu/Clip folded in, writing that node's output directly.
    fused: Option<Fused>,
    /// This step was folded into an earlier step's [`Fused`] op (skipped when unobserved).
    fused_away: bool,
}

/// A producer step with its single consumer (an elementwise clamp) folded in.
struct Fused {
    op: Box<dyn Op>,
    /// Op type shown in profiles, e.g. `Conv+Clip`.
    op_type: String,
    /// The consumer's output, which the fused op produces.
    out: ValueId,
}

/// Declared graph input.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Tensor name.
    pub name: String,
    /// Value id.
    pub value: ValueId,
    /// Declared element type (when the file declares one).
    pub dtype: Option<DType>,
    /// Declared shape (when the file declares one).
    pub shape: Option<Vec<Dim>>,
}

/// Wall time spent per op type during one or more runs (see [`Interpreter::run_profiled`]).
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// (op type, number of node executions, seconds), in first-execution order.
    pub ops: Vec<(String, usize, f64)>,
    /// (node label, op type, seconds) of every node execution, in execution order.
    pub nodes: Vec<(String, String, f64)>,
}

impl Profile {
    fn add(&mut self, node: &str, op: &str, secs: f64) {
        self.nodes.push((node.to_string(), op.to_string(), secs));
        match self.ops.iter_mut().find(|e| e.0 == op) {
            Some(e) => {
                e.1 += 1;
                e.2 += secs;
            }
            None => self.ops.push((op.to_string(), 1, secs)),
        }
    }

    /// Total seconds over all ops.
    pub fn total(&self) -> f64 {
        self.ops.iter().map(|e| e.2).sum()
    }

    /// A table sorted by time, one op type per line: op, count, milliseconds, share.
    pub fn table(&self) -> String {
        let mut v = self.ops.clone();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        let total = self.total().max(f64::MIN_POSITIVE);
        let mut s = format!("{:<28} {:>6} {:>10} {:>6}\n", "op", "nodes", "ms", "%");
        for (op, n, t) in v {
            s += &format!(
                "{op:<28} {n:>6} {:>10.2} {:>5.1}%\n",
                t * 1e3,
                100.0 * t / total
            );
        }
        s += &format!("{:<28} {:>6} {:>10.2}\n", "total", "", total * 1e3);
        let mut slow = self.nodes.clone();
        slow.sort_by(|a, b| b.2.total_cmp(&a.2));
        s += "slowest nodes:\n";
        for (node, op, t) in slow.iter().take(8) {
            s += &format!("  {:>10.2} ms  {op} {node}\n", t * 1e3);
        }
        s
    }
}

fn profile_env() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MFQ_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// A compiled, reusable execution plan for one model.
pub struct Interpreter {
    steps: Vec<Step>,
    n_values: usize,
    consts: Vec<(ValueId, Arc<Tensor>)>,
    names: Vec<String>,
    inputs: Vec<InputSpec>,
    outputs: Vec<(String, ValueId)>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("steps", &self.steps.len())
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// Resolves one node to an executable op at its domain's opset.
pub fn build_op(model: &Model, id: NodeId) -> Result<Box<dyn Op>, InterpError> {
    let node = model.graph.node(id);
    let opset = model
        .opset_for(&node.domain)
        .or_else(|| {
            ops::QONNX_DOMAINS
                .contains(&node.domain.as_str())
                .then_some(1)
        })
        .ok_or_else(|| InterpError::NoOpset {
            node: node.label(),
            op: node.op_type.clone(),
            domain: node.domain.clone(),
        })?;
    ops::build(node, opset).map_err(|error| InterpError::Build {
        node: node.label(),
        op: node.op_type.clone(),
        domain: if node.domain.is_empty() {
            String::new()
        } else {
            format!("{}::", node.domain)
        },
        opset,
        error: Box::new(error),
    })
}

impl Interpreter {
    /// Compiles a plan for `model`. Fails on the first unsupported node.
    pub fn new(model: &Model) -> Result<Interpreter, InterpError> {
        let g = &model.graph;
        crate::ir::verify::verify(g)?;
        let order = g.topo_order()?;
        let mut steps = Vec::with_capacity(order.len());
        for id in order {
            let op = build_op(model, id)?;
            let node = g.node(id);
            steps.push(Step {
                node: id,
                label: node.label(),
                op_type: node.op_type.clone(),
                op,
                inputs: node.inputs.clone(),
                outputs: node.outputs.clone(),
                free: Vec::new(),
                fused: None,
                fused_away: false,
            });
        }
        fuse_clamps(model, &mut steps);
        let n_values = g.value_count();
        let mut consts = Vec::new();
        let inputs: Vec<InputSpec> = g
            .inputs
            .iter()
            .map(|&v| InputSpec {
                name: g.value(v).name.clone(),
                value: v,
                dtype: g.value(v).dtype,
                shape: g.value(v).shape.clone(),
            })
            .collect();
        for v in g.value_ids() {
            if let Some(c) = &g.value(v).constant {
                if g.producer(v).is_none() {
                    consts.push((v, c.clone()));
                }
            }
        }
        // Last use of each non-constant, non-output value.
        let mut last: Vec<Option<usize>> = vec![None; n_values];
        for (i, s) in steps.iter().enumerate() {
            for v in s.inputs.iter().flatten() {
                last[v.index()] = Some(i);
            }
        }
        let keep: std::collections::HashSet<ValueId> = g
            .outputs
            .iter()
            .copied()
            .chain(consts.iter().map(|c| c.0))
            .collect();
        for v in g.value_ids() {
            if let Some(i) = last[v.index()] {
                if !keep.contains(&v) {
                    steps[i].free.push(v);
                }
            }
        }
        Ok(Interpreter {
            steps,
            n_values,
            consts,
            names: g.value_ids().map(|v| g.value(v).name.clone()).collect(),
            inputs,
            outputs: g
                .outputs
                .iter()
                .map(|&v| (g.value(v).name.clone(), v))
                .collect(),
        })
    }

    /// Inputs the caller must feed (those without an initializer default come first in
    /// `required`; inputs with defaults may be overridden).
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Output names in graph order.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.0.clone()).collect()
    }

    fn is_defaulted(&self, v: ValueId) -> bool {
        self.consts.iter().any(|c| c.0 == v)
    }

    /// Checks names, dtypes and non-batch dims of the given inputs.
    fn check_inputs(
        &self,
        feeds: &[(String, Tensor)],
        batch_free: bool,
    ) -> Result<(), InterpError> {
        for (name, t) in feeds {
            let spec = self
                .inputs
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| {
                    InterpError::UnknownInput(
                        name.clone(),
                        self.inputs
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })?;
            if let Some(d) = spec.dtype {
                if d != t.dtype() {
                    return Err(InterpError::InputDtype {
                        name: name.clone(),
                        expected: d,
                        got: t.dtype(),
                    });
                }
            }
            if let Some(s) = &spec.shape {
                let ok = s.len() == t.shape().len()
                    && s.iter()
                        .zip(t.shape())
                        .enumerate()
                        .all(|(i, (d, &n))| match d {
                            Dim::Known(k) => *k == n || (i == 0 && batch_free),
                            _ => true,
                        });
                if !ok {
                    return Err(InterpError::InputShape {
                        name: name.clone(),
                        expected: crate::ir::dump::shape_str(Some(s)),
                        got: t.shape().to_vec(),
                    });
                }
            }
        }
        for s in &self.inputs {
            if !self.is_defaulted(s.value) && !feeds.iter().any(|f| f.0 == s.name) {
                return Err(InterpError::MissingInput(s.name.clone()));
            }
        }
        Ok(())
    }

    /// Runs once on exactly the given inputs (shapes must match the declaration, including the
    /// batch dimension when it is fixed). Returns outputs in graph order.
    pub fn run(&self, feeds: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, InterpError> {
        self.check_inputs(feeds, false)?;
        self.exec(feeds, None)
    }

    /// Runs once and reports every produced tensor to `obs`.
    pub fn run_observed(
        &self,
        feeds: &[(String, Tensor)],
        obs: &mut dyn Observer,
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        self.check_inputs(feeds, false)?;
        self.exec(feeds, Some(obs))
    }

    /// Runs once like [`Interpreter::run`] and also returns the wall time spent per op type.
    pub fn run_profiled(
        &self,
        feeds: &[(String, Tensor)],
    ) -> Result<(Vec<(String, Tensor)>, Profile), InterpError> {
        self.check_inputs(feeds, false)?;
        let mut prof = Profile::default();
        let outs = self.exec_inner(feeds, None, Some(&mut prof))?;
        Ok((outs, prof))
    }

    fn exec(
        &self,
        feeds: &[(String, Tensor)],
        obs: Option<&mut dyn Observer>,
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        if profile_env() {
            let mut prof = Profile::default();
            let outs = self.exec_inner(feeds, obs, Some(&mut prof))?;
            eprint!("{}", prof.table());
            Ok(outs)
        } else {
            self.exec_inner(feeds, obs, None)
        }
    }

    fn exec_inner(
        &self,
        feeds: &[(String, Tensor)],
        mut obs: Option<&mut dyn Observer>,
        mut prof: Option<&mut Profile>,
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        let mut vals: Vec<Option<Arc<Tensor>>> = vec![None; self.n_values];
        for (v, c) in &self.consts {
            vals[v.index()] = Some(c.clone());
        }
        for (name, t) in feeds {
            if let Some(s) = self.inputs.iter().find(|s| &s.name == name) {
                if let Some(o) = obs.as_deref_mut() {
                    o.observe(s.value, name, t);
                }
                vals[s.value.index()] = Some(Arc::new(t.clone()));
            }
        }
        // Fusion changes which intermediate tensors exist, so it is off while observed.
        let fuse = obs.is_none();
        for s in &self.steps {
            if fuse && s.fused_away {
                for v in &s.free {
                    release(&mut vals[v.index()]);
                }
                continue;
            }
            let t0 = prof.is_some().then(std::time::Instant::now);
            let fused = s.fused.as_ref().filter(|_| fuse);
            // Input 0 is handed over by value when this is its last use and nothing else holds
            // it (not a constant, not another input slot of this node, no observer needs it
            // afterwards), so elementwise and reshape ops can work in place.
            let owned = match s.inputs.first().copied().flatten() {
                Some(v)
                    if s.free.contains(&v)
                        && s.inputs.iter().filter(|i| **i == Some(v)).count() == 1 =>
                {
                    match vals[v.index()].take().map(Arc::try_unwrap) {
                        Some(Ok(t)) => Some(t),
                        Some(Err(shared)) => {
                            vals[v.index()] = Some(shared);
                            None
                        }
                        None => None,
                    }
                }
                _ => None,
            };
            let ins: Vec<Option<&Tensor>> = s
                .inputs
                .iter()
                .map(|i| i.and_then(|v| vals[v.index()].as_deref()))
                .collect();
            let op = fused.map_or(&s.op, |f| &f.op);
            let res = match owned {
                Some(t) => op.eval_owned(t, &ins),
                None => op.eval(&ins),
            };
            let outs = res.map_err(|error| InterpError::Eval {
                node: s.label.clone(),
                op: s.op_type.clone(),
                error: Box::new(error),
            })?;
            if let (Some(p), Some(t0)) = (prof.as_deref_mut(), t0) {
                let op_type = fused.map_or(&s.op_type, |f| &f.op_type);
                p.add(&s.label, op_type, t0.elapsed().as_secs_f64());
            }
            if let Some(f) = fused {
                let t = outs
                    .into_iter()
                    .next()
                    .ok_or_else(|| InterpError::OutputCount {
                        node: s.label.clone(),
                        op: s.op_type.clone(),
                        got: 0,
                        expected: 1,
                    })?;
                vals[f.out.index()] = Some(Arc::new(t));
                for v in &s.free {
                    release(&mut vals[v.index()]);
                }
                continue;
            }
            if outs.len() < s.outputs.iter().filter(|o| o.is_some()).count() {
                return Err(InterpError::OutputCount {
                    node: s.label.clone(),
                    op: s.op_type.clone(),
                    got: outs.len(),
                    expected: s.outputs.len(),
                });
            }
            for (slot, t) in s.outputs.iter().zip(outs) {
                if let Some(v) = slot {
                    if let Some(o) = obs.as_deref_mut() {
                        o.observe(*v, &self.names[v.index()], &t);
                    }
                    vals[v.index()] = Some(Arc::new(t));
                }
            }
            for v in &s.free {
                release(&mut vals[v.index()]);
            }
        }
        let mut outs = Vec::with_capacity(self.outputs.len());
        for (i, (name, v)) in self.outputs.iter().enumerate() {
            let slot = &mut vals[v.index()];
            let missing = || InterpError::MissingOutput(name.clone());
            // Moved out when no later output names it and nothing else holds it; else copied.
            let t = if self.outputs[i + 1..].iter().any(|(_, w)| w == v) {
                (**slot.as_ref().ok_or_else(missing)?).clone()
            } else {
                Arc::try_unwrap(slot.take().ok_or_else(missing)?).unwrap_or_else(|a| (*a).clone())
            };
            outs.push((name.clone(), t));
        }
        Ok(outs)
    }

    /// Fixed batch size declared by the model (first input's first dim), if any.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.inputs
            .iter()
            .find(|s| !self.is_defaulted(s.value))
            .and_then(|s| s.shape.as_ref()?.first()?.known())
    }

    /// Runs a batch of any size: inputs are split along axis 0 into chunks of `chunk` samples
    /// (default: the model's fixed batch, else half the batch), chunks run in parallel and the
    /// outputs are concatenated along axis 0.
    pub fn run_batched(
        &self,
        feeds: &[(String, Tensor)],
        chunk: Option<usize>,
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        self.check_inputs(feeds, true)?;
        let n = batch_size(feeds)?;
        let chunk = chunk
            .or(self.fixed_batch())
            .unwrap_or_else(|| n.div_ceil(2))
            .max(1);
        if n <= chunk {
            return self.run_unchecked_batch(feeds);
        }
        let starts: Vec<usize> = (0..n).step_by(chunk).collect();
        use rayon::prelude::*;
        let parts: Vec<Result<Vec<(String, Tensor)>, InterpError>> = starts
            .par_iter()
            .map(|&s| {
                let sub: Vec<(String, Tensor)> = feeds
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), slice_batch(t, s, (s + chunk).min(n))?)))
                    .collect::<Result<_, InterpError>>()?;
                self.exec(&sub, None)
            })
            .collect();
        let mut parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for (i, (name, _)) in self.outputs.iter().enumerate() {
            let pieces: Vec<Tensor> = parts
                .iter_mut()
                .map(|p| std::mem::replace(&mut p[i].1, Tensor::scalar_f32(0.0)))
                .collect();
            out.push((name.clone(), concat_batch(&pieces)?));
        }
        Ok(out)
    }

    fn run_unchecked_batch(
        &self,
        feeds: &[(String, Tensor)],
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        self.exec(feeds, None)
    }

    /// Like [`Interpreter::run_batched`] but sequential, reporting every tensor of every chunk to
    /// `obs` in chunk order.
    pub fn run_batched_observed(
        &self,
        feeds: &[(String, Tensor)],
        chunk: Option<usize>,
        obs: &mut dyn Observer,
    ) -> Result<Vec<(String, Tensor)>, InterpError> {
        self.check_inputs(feeds, true)?;
        let n = batch_size(feeds)?;
        let chunk = chunk.or(self.fixed_batch()).unwrap_or(n).max(1);
        let mut parts = Vec::new();
        for s in (0..n).step_by(chunk) {
            let sub: Vec<(String, Tensor)> = feeds
                .iter()
                .map(|(k, t)| Ok((k.clone(), slice_batch(t, s, (s + chunk).min(n))?)))
                .collect::<Result<_, InterpError>>()?;
            parts.push(self.exec(&sub, Some(obs))?);
        }
        let mut out = Vec::new();
        for (i, (name, _)) in self.outputs.iter().enumerate() {
            let pieces: Vec<Tensor> = parts.iter().map(|p| p[i].1.clone()).collect();
            out.push((name.clone(), concat_batch(&pieces)?));
        }
        Ok(out)
    }
}

/// Drops a dead intermediate tensor, handing a large f32 buffer back to the kernels' pool
/// (`kernels::buffer`) so the next op's output does not start from fresh pages.
fn release(slot: &mut Option<Arc<Tensor>>) {
    if let Some(Ok(t)) = slot.take().map(Arc::try_unwrap) {
        crate::ops::recycle(t);
    }
}

/// Folds each Relu/Clip into the Conv producing its input when the Conv output has no other use:
/// a single output, not a graph output, read by exactly one node, whose other inputs are
/// constants. The fused op computes exactly the Conv followed by the clamp (see
/// [`Op::with_clamp`]); it runs only when no observer needs the intermediate tensor.
fn fuse_clamps(model: &Model, steps: &mut [Step]) {
    let g = &model.graph;
    let is_onnx = |d: &str| d.is_empty() || d == "ai.onnx";
    let mut readers = vec![0usize; g.value_count()];
    for s in steps.iter() {
        for v in s.inputs.iter().flatten() {
            readers[v.index()] += 1;
        }
    }
    let pos: HashMap<NodeId, usize> = steps.iter().enumerate().map(|(i, s)| (s.node, i)).collect();
    for i in 0..steps.len() {
        let node = g.node(steps[i].node);
        if node.op_type != "Conv" || !is_onnx(&node.domain) || steps[i].outputs.len() != 1 {
            continue;
        }
        let Some(v) = steps[i].outputs[0] else {
            continue;
        };
        if readers[v.index()] != 1 || g.outputs.contains(&v) {
            continue;
        }
        let Some(&j) = g.consumers(v).first().and_then(|c| pos.get(&c.0)) else {
            continue;
        };
        let cons = g.node(steps[j].node);
        if j <= i
            || !matches!(cons.op_type.as_str(), "Relu" | "Clip")
            || !is_onnx(&cons.domain)
            || steps[j].inputs.first().copied().flatten() != Some(v)
            || steps[j].outputs.len() != 1
            || steps[j].fused_away
        {
            continue;
        }
        let Some(out) = steps[j].outputs[0] else {
            continue;
        };
        let Some(act) = constant_clamp(g, &steps[j].inputs, steps[j].op.as_ref()) else {
            continue;
        };
        let Some(op) = steps[i].op.with_clamp(act) else {
            continue;
        };
        let op_type = format!("{}+{}", steps[i].op_type, steps[j].op_type);
        steps[i].fused = Some(Fused { op, op_type, out });
        steps[j].fused_away = true;
    }
}

/// The clamp a Relu/Clip op applies, when its bounds (inputs after the first) are constants
/// known now (not overridable graph inputs); `inputs` are the node's inputs, `op` its built op.
pub(crate) fn constant_clamp(
    g: &crate::ir::Graph,
    inputs: &[Option<ValueId>],
    op: &dyn Op,
) -> Option<crate::kernels::conv::Clamp> {
    let mut consts: Vec<Option<&Tensor>> = vec![None];
    for inp in inputs.iter().skip(1) {
        match inp {
            None => consts.push(None),
            Some(c) if g.producer(*c).is_none() && !g.inputs.contains(c) => {
                consts.push(Some(g.value(*c).constant.as_deref()?));
            }
            Some(_) => return None,
        }
    }
    op.as_clamp(&consts)
}

fn batch_size(feeds: &[(String, Tensor)]) -> Result<usize, InterpError> {
    let mut n: Option<(String, usize)> = None;
    for (k, t) in feeds {
        let b = t.shape().first().copied().unwrap_or(1);
        match &n {
            None => n = Some((k.clone(), b)),
            Some((a, na)) if *na != b => {
                return Err(InterpError::BatchMismatch {
                    a: a.clone(),
                    na: *na,
                    b: k.clone(),
                    nb: b,
                })
            }
            _ => {}
        }
    }
    Ok(n.map(|x| x.1).unwrap_or(1))
}

fn slice_batch(t: &Tensor, s: usize, e: usize) -> Result<Tensor, InterpError> {
    use ndarray::{Axis, Slice};
    let sl = Slice::from(s..e);
    Ok(match t {
        Tensor::F32(a) => Tensor::F32(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::F64(a) => Tensor::F64(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::I64(a) => Tensor::I64(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::I32(a) => Tensor::I32(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::I8(a) => Tensor::I8(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::U8(a) => Tensor::U8(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::Bool(a) => Tensor::Bool(a.slice_axis(Axis(0), sl).to_owned()),
        Tensor::Packed { dtype, .. } => {
            return Err(InterpError::InputDtype {
                name: "<batch>".into(),
                expected: DType::F32,
                got: *dtype,
            })
        }
    })
}

fn concat_batch(parts: &[Tensor]) -> Result<Tensor, InterpError> {
    let refs: Vec<Option<&Tensor>> = parts.iter().map(Some).collect();
    let node = crate::ir::Node {
        attrs: vec![crate::ir::Attr {
            name: "axis".into(),
            value: crate::ir::AttrValue::Int(0),
        }],
        ..crate::ir::Node::new("Concat", vec![], vec![])
    };
    let op = ops::build(&node, 13).map_err(|error| InterpError::Eval {
        node: "<batch concat>".into(),
        op: "Concat".into(),
        error: Box::new(error),
    })?;
    let mut out = op.eval(&refs).map_err(|error| InterpError::Eval {
        node: "<batch concat>".into(),
        op: "Concat".into(),
        error: Box::new(error),
    })?;
    out.pop()
        .ok_or_else(|| InterpError::MissingOutput("<batch concat>".into()))
}

/// Convenience: feeds as a name → tensor map.
pub fn feeds_from_map(m: HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Attr, AttrValue, Node, Value};
    use ndarray::{ArrayD, IxDyn};

    fn arr(shape: &[usize], seed: u32) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
    }

    fn node(m: &mut Model, op: &str, ins: Vec<Option<ValueId>>, out: &str, attrs: Vec<Attr>) {
        let o = m.graph.add_value(Value::named(out));
        let mut n = Node::new(op, ins, vec![Some(o)]);
        n.name = out.to_string();
        n.attrs = attrs;
        m.graph.add_node(n).expect("add node");
    }

    fn ints(name: &str, v: &[i64]) -> Attr {
        Attr {
            name: name.into(),
            value: AttrValue::Ints(v.to_vec()),
        }
    }

    /// x → depthwise Conv → Clip(0, 6) → pointwise Conv (also read by Add) → Relu → y.
    fn model() -> Model {
        let mut m = Model::default();
        m.opsets.insert(String::new(), 17);
        let x = m.graph.add_value(Value::named("x"));
        m.graph.inputs.push(x);
        let wd = m.graph.add_constant("wd", arr(&[4, 1, 3, 3], 1));
        let bd = m.graph.add_constant("bd", arr(&[4], 2));
        let lo = m.graph.add_constant("lo", Tensor::scalar_f32(0.0));
        let hi = m.graph.add_constant("hi", Tensor::scalar_f32(0.5));
        let wp = m.graph.add_constant("wp", arr(&[4, 4, 1, 1], 3));
        node(
            &mut m,
            "Conv",
            vec![Some(x), Some(wd), Some(bd)],
            "dw",
            vec![
                ints("pads", &[1, 1, 1, 1]),
                ints("strides", &[2, 2]),
                Attr {
                    name: "group".into(),
                    value: AttrValue::Int(4),
                },
            ],
        );
        let dw = m.graph.find_value("dw").expect("dw");
        node(
            &mut m,
            "Clip",
            vec![Some(dw), Some(lo), Some(hi)],
            "clip",
            vec![],
        );
        let clip = m.graph.find_value("clip").expect("clip");
        node(
            &mut m,
            "Conv",
            vec![Some(clip), Some(wp), None],
            "pw",
            vec![],
        );
        let pw = m.graph.find_value("pw").expect("pw");
        // `pw` has two readers, so its Relu must not be fused.
        node(&mut m, "Relu", vec![Some(pw)], "r", vec![]);
        let r = m.graph.find_value("r").expect("r");
        node(&mut m, "Add", vec![Some(r), Some(pw)], "y", vec![]);
        let y = m.graph.find_value("y").expect("y");
        m.graph.outputs.push(y);
        m
    }

    struct Seen(Vec<(String, Tensor)>);
    impl Observer for Seen {
        fn observe(&mut self, _v: ValueId, name: &str, t: &Tensor) {
            self.0.push((name.to_string(), t.clone()));
        }
    }

    #[test]
    fn clamp_fusion_is_exact_and_invisible_to_observers() {
        let m = model();
        let interp = Interpreter::new(&m).expect("interpreter");
        let fused: Vec<_> = interp.steps.iter().filter(|s| s.fused.is_some()).collect();
        assert_eq!(fused.len(), 1, "only the depthwise Conv + Clip pair fuses");
        assert_eq!(
            fused[0].fused.as_ref().map(|f| f.op_type.as_str()),
            Some("Conv+Clip")
        );
        let feeds = vec![("x".to_string(), arr(&[2, 4, 9, 9], 4))];
        let plain = interp.run(&feeds).expect("run");
        let (profiled, prof) = interp.run_profiled(&feeds).expect("run");
        assert!(prof.ops.iter().any(|o| o.0 == "Conv+Clip"));
        assert!(!prof.ops.iter().any(|o| o.0 == "Clip"));
        let mut seen = Seen(Vec::new());
        let observed = interp.run_observed(&feeds, &mut seen).expect("run");
        // Bit-identical outputs with and without fusion.
        assert_eq!(plain, observed);
        assert_eq!(plain, profiled);
        // The observer still sees the Conv output before clamping, and the Clip after it.
        let names: Vec<&str> = seen.0.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["x", "dw", "clip", "pw", "r", "y"]);
        let dw = seen.0[1].1.as_f32().expect("f32");
        let clip = seen.0[2].1.as_f32().expect("f32");
        assert!(dw.iter().any(|&v| !(0.0..=0.5).contains(&v)));
        for (a, b) in dw.iter().zip(clip.iter()) {
            assert_eq!(a.clamp(0.0, 0.5), *b);
        }
    }

    /// Graph outputs are moved out of the run when nothing else holds them and copied
    /// otherwise: an output listed twice, a graph input that is also an output and a constant
    /// output all come back whole, and repeated runs give the same values.
    #[test]
    fn shared_outputs_are_copied_not_lost() {
        let mut m = model();
        let y = m.graph.find_value("y").expect("y");
        let x = m.graph.find_value("x").expect("x");
        let wd = m.graph.find_value("wd").expect("wd");
        m.graph.outputs = vec![y, x, y, wd];
        let interp = Interpreter::new(&m).expect("interpreter");
        let xin = arr(&[2, 4, 9, 9], 4);
        let feeds = vec![("x".to_string(), xin.clone())];
        let first = interp.run(&feeds).expect("run");
        assert_eq!(first.len(), 4);
        assert_eq!(first[0].1.shape(), &[2, 4, 5, 5]);
        assert_eq!(first[0].1, first[2].1);
        assert_eq!(first[1].1, xin);
        assert_eq!(first[3].1, arr(&[4, 1, 3, 3], 1));
        let second = interp.run(&feeds).expect("run");
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a, b);
        }
    }
}
