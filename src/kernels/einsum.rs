//! ONNX Einsum for f32 operands: explicit (`->`) and implicit outputs, `...` broadcasting,
//! repeated labels within an operand (diagonals), labels summed out, any number of operands.
//!
//! Evaluation: take diagonals, sum out labels used by one operand only, then contract operands
//! pairwise from left to right by permuting each pair to `[batch, free, contracted]` layouts and
//! calling the batched GEMM of [`super::matmul::matmul`]; finally permute to the output order.

use super::matmul::matmul;
use super::{param_err, shape_err, KernelError};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

const OP: &str = "Einsum";

/// Label of one axis: a letter, or the k-th ellipsis dimension counted from the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Label {
    Ell(usize),
    Char(char),
}

/// One side of an equation term before ellipsis expansion.
#[derive(Debug, Clone)]
struct Term {
    letters_before: Vec<char>,
    ellipsis: bool,
    letters_after: Vec<char>,
}

fn parse_term(s: &str) -> Result<Term, KernelError> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let (before, after, ellipsis) = match s.find("...") {
        Some(p) => (&s[..p], &s[p + 3..], true),
        None => (s.as_str(), "", false),
    };
    let check = |part: &str| -> Result<Vec<char>, KernelError> {
        part.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c)
                } else {
                    Err(param_err(
                        OP,
                        "equation",
                        format!("invalid character {c:?} in term {s:?}"),
                    ))
                }
            })
            .collect()
    };
    Ok(Term {
        letters_before: check(before)?,
        ellipsis,
        letters_after: check(after)?,
    })
}

impl Term {
    fn explicit_len(&self) -> usize {
        self.letters_before.len() + self.letters_after.len()
    }

    /// Labels for an operand of rank `rank` (ellipsis dims numbered from the right).
    fn labels(&self, rank: usize, term: &str) -> Result<Vec<Label>, KernelError> {
        let ne = self.explicit_len();
        let ell = if self.ellipsis {
            rank.checked_sub(ne).ok_or_else(|| {
                shape_err(
                    OP,
                    format!("term {term:?} has more labels than the operand rank {rank}"),
                )
            })?
        } else if rank != ne {
            return Err(shape_err(
                OP,
                format!("term {term:?} has {ne} labels but the operand has rank {rank}"),
            ));
        } else {
            0
        };
        let mut v: Vec<Label> = self
            .letters_before
            .iter()
            .map(|&c| Label::Char(c))
            .collect();
        v.extend((0..ell).rev().map(Label::Ell));
        v.extend(self.letters_after.iter().map(|&c| Label::Char(c)));
        Ok(v)
    }
}

/// An intermediate operand: data plus one label per axis (labels unique).
struct Operand {
    data: ArrayD<f32>,
    labels: Vec<Label>,
}

/// Collapses repeated labels of one operand by taking the diagonal.
fn take_diagonals(x: ArrayD<f32>, labels: Vec<Label>) -> Result<Operand, KernelError> {
    let mut uniq: Vec<Label> = Vec::new();
    for l in &labels {
        if !uniq.contains(l) {
            uniq.push(*l);
        }
    }
    if uniq.len() == labels.len() {
        return Ok(Operand { data: x, labels });
    }
    let mut sizes = Vec::with_capacity(uniq.len());
    for u in &uniq {
        let dims: Vec<usize> = labels
            .iter()
            .zip(x.shape())
            .filter(|(l, _)| *l == u)
            .map(|(_, &d)| d)
            .collect();
        if dims.iter().any(|&d| d != dims[0]) {
            return Err(shape_err(
                OP,
                format!("repeated label {u:?} has differing dimensions {dims:?}"),
            ));
        }
        sizes.push(dims[0]);
    }
    let pos: Vec<usize> = labels
        .iter()
        .map(|l| uniq.iter().position(|u| u == l).unwrap_or(0))
        .collect();
    let mut out = ArrayD::<f32>::zeros(IxDyn(&sizes));
    let mut src = vec![0usize; labels.len()];
    for (idx, v) in out.indexed_iter_mut() {
        for (k, &p) in pos.iter().enumerate() {
            src[k] = idx[p];
        }
        *v = x[IxDyn(&src)];
    }
    Ok(Operand {
        data: out,
        labels: uniq,
    })
}

/// Sums out every axis whose label is not in `keep`.
fn sum_out(op: Operand, keep: &[Label]) -> Operand {
    let mut data = op.data;
    let mut labels = op.labels;
    let mut i = labels.len();
    while i > 0 {
        i -= 1;
        if !keep.contains(&labels[i]) {
            data = data.sum_axis(Axis(i));
            labels.remove(i);
        }
    }
    Operand { data, labels }
}

fn permute_to(op: &Operand, order: &[Label]) -> ArrayD<f32> {
    let perm: Vec<usize> = order
        .iter()
        .map(|l| op.labels.iter().position(|m| m == l).unwrap_or(0))
        .collect();
    op.data
        .view()
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned()
}

fn size_of(op: &Operand, l: Label) -> usize {
    op.labels
        .iter()
        .position(|m| *m == l)
        .map_or(1, |p| op.data.shape()[p])
}

/// Broadcasts size-1 axes of `op` to the sizes in `target` (label → size) where they differ.
fn broadcast_to(op: Operand, target: &[(Label, usize)]) -> Result<Operand, KernelError> {
    let shape: Vec<usize> = op
        .labels
        .iter()
        .zip(op.data.shape())
        .map(|(l, &d)| target.iter().find(|(t, _)| t == l).map_or(d, |&(_, s)| s))
        .collect();
    if shape == op.data.shape() {
        return Ok(op);
    }
    let data = op
        .data
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| {
            shape_err(
                OP,
                format!(
                    "operand {:?} does not broadcast to {shape:?}",
                    op.data.shape()
                ),
            )
        })?
        .to_owned();
    Ok(Operand {
        data,
        labels: op.labels,
    })
}

/// Contracts two operands, keeping the labels in `keep`.
fn contract(a: Operand, b: Operand, keep: &[Label]) -> Result<Operand, KernelError> {
    let a = sum_out(a, &[keep, &b.labels].concat());
    let b = sum_out(b, &[keep, &a.labels].concat());
    let shared: Vec<Label> = a
        .labels
        .iter()
        .filter(|l| b.labels.contains(l))
        .copied()
        .collect();
    // Resolve broadcasting of shared labels (size 1 against size n).
    let mut target = Vec::new();
    for &l in &shared {
        let (sa, sb) = (size_of(&a, l), size_of(&b, l));
        if sa != sb {
            if sa != 1 && sb != 1 {
                return Err(shape_err(
                    OP,
                    format!("label {l:?} has dimensions {sa} and {sb} in two operands"),
                ));
            }
            target.push((l, sa.max(sb)));
        }
    }
    let a = broadcast_to(a, &target)?;
    let b = broadcast_to(b, &target)?;
    let batch: Vec<Label> = shared
        .iter()
        .filter(|l| keep.contains(l))
        .copied()
        .collect();
    let contracted: Vec<Label> = shared
        .iter()
        .filter(|l| !keep.contains(l))
        .copied()
        .collect();
    let a_free: Vec<Label> = a
        .labels
        .iter()
        .filter(|l| !shared.contains(l))
        .copied()
        .collect();
    let b_free: Vec<Label> = b
        .labels
        .iter()
        .filter(|l| !shared.contains(l))
        .copied()
        .collect();
    let prod = |op: &Operand, ls: &[Label]| ls.iter().map(|&l| size_of(op, l)).product::<usize>();
    let (nb, m, k, n) = (
        prod(&a, &batch),
        prod(&a, &a_free),
        prod(&a, &contracted),
        prod(&b, &b_free),
    );
    let at = permute_to(&a, &[batch.as_slice(), &a_free, &contracted].concat())
        .into_shape_with_order(IxDyn(&[nb, m, k]))
        .map_err(|e| shape_err(OP, e.to_string()))?;
    let bt = permute_to(&b, &[batch.as_slice(), &contracted, &b_free].concat())
        .into_shape_with_order(IxDyn(&[nb, k, n]))
        .map_err(|e| shape_err(OP, e.to_string()))?;
    let c = matmul(&at.view(), &bt.view())?;
    let mut shape: Vec<usize> = batch.iter().map(|&l| size_of(&a, l)).collect();
    shape.extend(a_free.iter().map(|&l| size_of(&a, l)));
    shape.extend(b_free.iter().map(|&l| size_of(&b, l)));
    let data = c
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| shape_err(OP, e.to_string()))?;
    Ok(Operand {
        data,
        labels: [batch, a_free, b_free].concat(),
    })
}

/// ONNX Einsum: `equation` such as `"bct,bcs->bts"` or `"ij,jk"` (implicit output: ellipsis
/// dimensions, then labels appearing exactly once, alphabetically). Labels are ASCII letters
/// (case-sensitive); `...` stands for broadcast leading dimensions. Labels absent from the output
/// are summed over.
pub fn einsum(equation: &str, inputs: &[ArrayViewD<'_, f32>]) -> Result<ArrayD<f32>, KernelError> {
    let (lhs, rhs) = match equation.find("->") {
        Some(p) => (&equation[..p], Some(&equation[p + 2..])),
        None => (equation, None),
    };
    let terms_s: Vec<&str> = lhs.split(',').collect();
    if terms_s.len() != inputs.len() {
        return Err(param_err(
            OP,
            "equation",
            format!(
                "{equation:?} has {} input terms for {} inputs",
                terms_s.len(),
                inputs.len()
            ),
        ));
    }
    let mut ops = Vec::with_capacity(inputs.len());
    let mut max_ell = 0usize;
    for (ts, x) in terms_s.iter().zip(inputs) {
        let t = parse_term(ts)?;
        let labels = t.labels(x.ndim(), ts)?;
        max_ell = max_ell.max(x.ndim() - t.explicit_len());
        ops.push(take_diagonals(x.to_owned(), labels)?);
    }
    // Output labels.
    let out_labels: Vec<Label> = match rhs {
        Some(r) => {
            let t = parse_term(r)?;
            if t.ellipsis || max_ell == 0 {
                t.labels(t.explicit_len() + if t.ellipsis { max_ell } else { 0 }, r)?
            } else {
                return Err(param_err(
                    OP,
                    "equation",
                    format!("{equation:?}: inputs use '...' but the output does not"),
                ));
            }
        }
        None => {
            let mut count: Vec<(char, usize)> = Vec::new();
            for ts in &terms_s {
                let t = parse_term(ts)?;
                for c in t.letters_before.iter().chain(&t.letters_after) {
                    match count.iter_mut().find(|(d, _)| d == c) {
                        Some(e) => e.1 += 1,
                        None => count.push((*c, 1)),
                    }
                }
            }
            let mut singles: Vec<char> = count.iter().filter(|e| e.1 == 1).map(|e| e.0).collect();
            singles.sort_unstable();
            let mut v: Vec<Label> = (0..max_ell).rev().map(Label::Ell).collect();
            v.extend(singles.into_iter().map(Label::Char));
            v
        }
    };
    for (i, l) in out_labels.iter().enumerate() {
        if out_labels[..i].contains(l) {
            return Err(param_err(
                OP,
                "equation",
                format!("{equation:?}: output label {l:?} repeated"),
            ));
        }
        if !ops.iter().any(|o| o.labels.contains(l)) {
            return Err(param_err(
                OP,
                "equation",
                format!("{equation:?}: output label {l:?} does not appear in any input"),
            ));
        }
    }
    // Check that each label has one size (1 broadcasts only for ellipsis dimensions).
    let mut sizes: Vec<(Label, usize)> = Vec::new();
    for o in &ops {
        for (&l, &d) in o.labels.iter().zip(o.data.shape()) {
            match sizes.iter_mut().find(|(m, _)| *m == l) {
                None => sizes.push((l, d)),
                Some(e) => {
                    if e.1 != d {
                        let ell = matches!(l, Label::Ell(_));
                        if ell && (d == 1 || e.1 == 1) {
                            e.1 = e.1.max(d);
                        } else {
                            return Err(shape_err(
                                OP,
                                format!("label {l:?} has dimensions {} and {d}", e.1),
                            ));
                        }
                    }
                }
            }
        }
    }
    // Left-to-right pairwise contraction.
    let mut iter = ops.into_iter();
    let first = iter
        .next()
        .ok_or_else(|| param_err(OP, "inputs", "at least one input is required"))?;
    let rest: Vec<Operand> = iter.collect();
    let needed_after = |i: usize| -> Vec<Label> {
        let mut v = out_labels.clone();
        for o in &rest[i..] {
            v.extend(o.labels.iter().copied());
        }
        v
    };
    let mut acc = sum_out(first, &needed_after(0));
    for (i, b) in rest.iter().enumerate() {
        let b = Operand {
            data: b.data.clone(),
            labels: b.labels.clone(),
        };
        acc = contract(acc, b, &needed_after(i + 1))?;
    }
    let acc = sum_out(acc, &out_labels);
    // Ellipsis dims may still be size 1 where the output expects a broadcast size.
    let target: Vec<(Label, usize)> = sizes
        .iter()
        .filter(|(l, _)| out_labels.contains(l))
        .copied()
        .collect();
    let acc = broadcast_to(acc, &target)?;
    Ok(permute_to(&acc, &out_labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{assert_close, rand_array};
    use ndarray::array;

    /// Direct evaluation for equations without ellipsis: loop over every assignment of labels.
    fn naive(eq: &str, xs: &[&ArrayD<f32>]) -> ArrayD<f32> {
        let (lhs, rhs) = eq.split_once("->").expect("explicit");
        let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
        let out: Vec<char> = rhs.chars().collect();
        let mut labels: Vec<(char, usize)> = Vec::new();
        for (t, x) in terms.iter().zip(xs) {
            for (c, &d) in t.iter().zip(x.shape()) {
                if !labels.iter().any(|(l, _)| l == c) {
                    labels.push((*c, d));
                }
            }
        }
        let oshape: Vec<usize> = out
            .iter()
            .map(|c| labels.iter().find(|(l, _)| l == c).expect("label").1)
            .collect();
        let mut y = ArrayD::<f64>::zeros(IxDyn(&oshape));
        let total: usize = labels.iter().map(|l| l.1).product();
        for mut f in 0..total {
            let mut val = vec![0usize; labels.len()];
            for (i, l) in labels.iter().enumerate().rev() {
                val[i] = f % l.1;
                f /= l.1;
            }
            let get = |c: &char| val[labels.iter().position(|(l, _)| l == c).expect("l")];
            let mut p = 1f64;
            for (t, x) in terms.iter().zip(xs) {
                let idx: Vec<usize> = t.iter().map(get).collect();
                p *= x[IxDyn(&idx)] as f64;
            }
            let oi: Vec<usize> = out.iter().map(get).collect();
            y[IxDyn(&oi)] += p;
        }
        y.mapv(|v| v as f32)
    }

    #[test]
    fn terrain_unet_equations() {
        // The two forms used by the W5 terrain-diffusion UNet attention.
        let q = rand_array(&[2, 8, 5], 1);
        let k = rand_array(&[2, 8, 7], 2);
        let w = einsum("bct,bcs->bts", &[q.view(), k.view()]).expect("einsum");
        assert_close(&w, &naive("bct,bcs->bts", &[&q, &k]), 1e-5);
        let v = rand_array(&[2, 8, 7], 3);
        let a = einsum("bts,bcs->bct", &[w.view(), v.view()]).expect("einsum");
        assert_close(&a, &naive("bts,bcs->bct", &[&w, &v]), 1e-5);
    }

    #[test]
    fn general_forms_match_naive() {
        let cases: Vec<(&str, Vec<Vec<usize>>)> = vec![
            ("ij,jk->ik", vec![vec![3, 4], vec![4, 5]]),
            ("ij->ji", vec![vec![3, 4]]),
            ("ij->", vec![vec![3, 4]]),
            ("i,j->ij", vec![vec![3], vec![4]]),
            ("bhid,bhjd->bhij", vec![vec![2, 3, 4, 5], vec![2, 3, 6, 5]]),
            ("ij,jk,kl->il", vec![vec![2, 3], vec![3, 4], vec![4, 2]]),
            ("ijk,ikl->jl", vec![vec![2, 3, 4], vec![2, 4, 5]]),
            ("abc,cd->dba", vec![vec![2, 3, 4], vec![4, 2]]),
            ("ii->i", vec![vec![4, 4]]),
            ("iij,jk->ik", vec![vec![3, 3, 2], vec![2, 4]]),
        ];
        for (ci, (eq, shapes)) in cases.iter().enumerate() {
            let xs: Vec<ArrayD<f32>> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| rand_array(s, 100 + (ci * 10 + i) as u64))
                .collect();
            let views: Vec<ArrayViewD<'_, f32>> = xs.iter().map(|x| x.view()).collect();
            let got = einsum(eq, &views).expect(eq);
            let refs: Vec<&ArrayD<f32>> = xs.iter().collect();
            assert_close(&got, &naive(eq, &refs), 1e-5);
        }
    }

    #[test]
    fn implicit_output_ellipsis_and_trace() {
        let m = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        let t = einsum("ii", &[m.view()]).expect("trace");
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), vec![5.0]);
        // Implicit "ji" output is alphabetical: "ij" → transpose of input labels j,i.
        let tr = einsum("ji", &[m.view()]).expect("transpose");
        assert_eq!(tr, array![[1.0f32, 3.0], [2.0, 4.0]].into_dyn());
        // Ellipsis with broadcasting: [2,1,3,4] x [5,4,6] → [2,5,3,6].
        let a = rand_array(&[2, 1, 3, 4], 7);
        let b = rand_array(&[5, 4, 6], 8);
        let y = einsum("...ij,...jk->...ik", &[a.view(), b.view()]).expect("ell");
        let r = matmul(&a.view(), &b.view()).expect("mm");
        assert_close(&y, &r, 1e-5);
        let y2 = einsum("...ij,...jk", &[a.view(), b.view()]).expect("implicit ell");
        assert_close(&y2, &r, 1e-5);
    }

    #[test]
    fn einsum_errors() {
        let a = rand_array(&[2, 3], 1);
        let b = rand_array(&[4, 5], 2);
        assert!(einsum("ij,jk->ik", &[a.view(), b.view()]).is_err());
        assert!(einsum("ij->ik", &[a.view()]).is_err());
        assert!(einsum("ijk->i", &[a.view()]).is_err());
        assert!(einsum("ij,jk->ik", &[a.view()]).is_err());
        assert!(einsum("i1->i", &[a.view()]).is_err());
    }
}
