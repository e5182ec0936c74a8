//! Importer, exporter, verifier and transform tests on small graphs built here with a little
//! builder, plus bad-input tests (every one must be an error, never a panic).

use mfq::interp::Interpreter;
use mfq::ir::{dump::dump_model, fold, Dim};
use mfq::tensor::Tensor;
use onnx_protobuf::{
    tensor_proto::DataLocation, tensor_shape_proto, type_proto, GraphProto, Message, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// A tiny builder for ModelProto test graphs.
struct B {
    g: GraphProto,
    opset: i64,
}

fn vi(name: &str, shape: &[i64]) -> ValueInfoProto {
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = 1;
    let mut sp = TensorShapeProto::new();
    for &d in shape {
        let mut dim = tensor_shape_proto::Dimension::new();
        if d < 0 {
            dim.set_dim_param("N".into());
        } else {
            dim.set_dim_value(d);
        }
        sp.dim.push(dim);
    }
    tt.shape = Some(sp).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(tp).into();
    v
}

impl B {
    fn new(opset: i64) -> B {
        B {
            g: GraphProto::new(),
            opset,
        }
    }
    fn input(mut self, name: &str, shape: &[i64]) -> B {
        self.g.input.push(vi(name, shape));
        self
    }
    fn output(mut self, name: &str, shape: &[i64]) -> B {
        self.g.output.push(vi(name, shape));
        self
    }
    fn init_f32(mut self, name: &str, dims: &[i64], data: &[f32], raw: bool) -> B {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = 1;
        if raw {
            t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        } else {
            t.float_data = data.to_vec();
        }
        self.g.initializer.push(t);
        self
    }
    fn init_i64(mut self, name: &str, data: &[i64]) -> B {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = vec![data.len() as i64];
        t.data_type = 7;
        t.int64_data = data.to_vec();
        self.g.initializer.push(t);
        self
    }
    fn node(mut self, op: &str, ins: &[&str], outs: &[&str]) -> B {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("{op}_{}", self.g.node.len());
        n.input = ins.iter().map(|s| s.to_string()).collect();
        n.output = outs.iter().map(|s| s.to_string()).collect();
        self.g.node.push(n);
        self
    }
    fn proto(self) -> ModelProto {
        let mut m = ModelProto::new();
        m.ir_version = 8;
        m.producer_name = "mfq-test".into();
        m.doc_string = "a test model".into();
        let mut kv = StringStringEntryProto::new();
        kv.key = "author".into();
        kv.value = "tests".into();
        m.metadata_props.push(kv);
        let mut o = OperatorSetIdProto::new();
        o.version = self.opset;
        m.opset_import.push(o);
        m.graph = Some(self.g).into();
        m
    }
    fn bytes(self) -> Vec<u8> {
        self.proto().write_to_bytes().expect("encode")
    }
}

fn small() -> B {
    B::new(13)
        .input("x", &[-1, 3])
        .init_f32("w", &[3, 2], &[1., 2., 3., 4., 5., 6.], true)
        .init_f32("b", &[2], &[0.5, -0.5], false)
        .node("MatMul", &["x", "w"], &["h"])
        .node("Add", &["h", "b"], &["y"])
        .output("y", &[-1, 2])
}

fn x(n: usize) -> Vec<(String, Tensor)> {
    let data: Vec<f32> = (0..n * 3).map(|i| i as f32 * 0.25 - 1.0).collect();
    vec![("x".into(), Tensor::f32(&[n, 3], data).expect("x"))]
}

#[test]
fn imports_runs_and_dumps_small_graph() {
    let m = mfq::onnx::from_bytes(&small().bytes(), None, "small").expect("import");
    let dump = dump_model(&m).expect("dump");
    assert!(
        dump.contains("h:?? = MatMul(x, w)") || dump.contains("= MatMul(x, w)"),
        "{dump}"
    );
    let out = Interpreter::new(&m)
        .expect("interp")
        .run(&x(2))
        .expect("run");
    let y = out[0].1.to_f32().expect("y");
    // x row 0 = [-1, -0.75, -0.5]: [-1-2.25-2.5, -2-3-3] + b
    assert_eq!(y[[0, 0]], -5.75 + 0.5);
    assert_eq!(y[[0, 1]], -8.0 - 0.5);
}

#[test]
fn round_trip_preserves_graph_and_metadata() {
    let mut p = small().proto();
    p.graph.as_mut().expect("graph").node[0].doc_string = "first node".into();
    let m = mfq::onnx::from_bytes(&p.write_to_bytes().expect("enc"), None, "a").expect("import");
    let bytes = mfq::onnx::to_bytes(&m).expect("export");
    let m2 = mfq::onnx::from_bytes(&bytes, None, "b").expect("reimport");
    assert_eq!(dump_model(&m).expect("d1"), dump_model(&m2).expect("d2"));
    assert_eq!(m2.meta.producer_name, "mfq-test");
    assert_eq!(m2.meta.doc_string, "a test model");
    assert_eq!(
        m2.meta.metadata_props,
        vec![("author".to_string(), "tests".to_string())]
    );
    let back = ModelProto::parse_from_bytes(&bytes).expect("parse");
    assert_eq!(back.graph.node[0].doc_string, "first node");
    let a = Interpreter::new(&m).expect("i1").run(&x(3)).expect("r1");
    let b = Interpreter::new(&m2).expect("i2").run(&x(3)).expect("r2");
    assert_eq!(a, b);
}

#[test]
fn unknown_fields_survive_round_trip() {
    let mut p = small().proto();
    // Field 99 (varint 7) on the model and on a node: unknown to the schema.
    p.special_fields.mut_unknown_fields().add_varint(99, 7);
    p.graph.as_mut().expect("graph").node[1]
        .special_fields
        .mut_unknown_fields()
        .add_varint(98, 5);
    let m = mfq::onnx::from_bytes(&p.write_to_bytes().expect("enc"), None, "u").expect("import");
    let back =
        ModelProto::parse_from_bytes(&mfq::onnx::to_bytes(&m).expect("export")).expect("parse");
    assert!(back.special_fields.unknown_fields().get(99).is_some());
    assert!(back.graph.node[1]
        .special_fields
        .unknown_fields()
        .get(98)
        .is_some());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let good = small().bytes();
    for cut in [1, 7, good.len() / 2, good.len() - 1] {
        let r = mfq::onnx::from_bytes(&good[..cut], None, "cut.onnx");
        assert!(r.is_err(), "truncated at {cut} must fail");
    }
    let e = mfq::onnx::from_bytes(b"\x89PNG\r\n\x1a\n not a model", None, "x.png")
        .expect_err("must fail");
    assert!(e.to_string().contains("x.png"), "{e}");
    let e = mfq::onnx::from_bytes(b"", None, "empty.onnx").expect_err("must fail");
    assert!(e.to_string().contains("not an ONNX model"), "{e}");
    // Undefined tensor.
    let e = mfq::onnx::from_bytes(
        &B::new(13)
            .input("x", &[1])
            .node("Relu", &["nope"], &["y"])
            .output("y", &[1])
            .bytes(),
        None,
        "u.onnx",
    )
    .expect_err("must fail");
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("Relu"),
        "{e}"
    );
    // Cycle.
    let e = mfq::onnx::from_bytes(
        &B::new(13)
            .input("x", &[1])
            .node("Add", &["x", "b"], &["a"])
            .node("Relu", &["a"], &["b"])
            .output("b", &[1])
            .bytes(),
        None,
        "c.onnx",
    )
    .expect_err("must fail");
    assert!(e.to_string().contains("cycle"), "{e}");
    // Missing external data.
    let dir = tempfile::tempdir().expect("tmp");
    let mut p = small().proto();
    let t = &mut p.graph.as_mut().expect("g").initializer[0];
    t.raw_data.clear();
    t.data_location = DataLocation::EXTERNAL.into();
    let mut kv = StringStringEntryProto::new();
    kv.key = "location".into();
    kv.value = "weights.bin".into();
    t.external_data.push(kv);
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, p.write_to_bytes().expect("enc")).expect("write");
    let e = mfq::onnx::load(&path).expect_err("must fail");
    assert!(
        e.to_string().contains("weights.bin") && e.to_string().contains("'w'"),
        "{e}"
    );
    // With the file present it loads.
    let bytes: Vec<u8> = [1f32, 2., 3., 4., 5., 6.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("weights.bin"), bytes).expect("write");
    let m = mfq::onnx::load(&path).expect("external data loads");
    let w = m.graph.find_value("w").expect("w");
    assert_eq!(
        m.graph
            .value(w)
            .constant
            .as_ref()
            .expect("c")
            .to_f32()
            .expect("f")[[2, 1]],
        6.0
    );
    // Random garbage never panics.
    let mut s = 12345u64;
    for len in [3usize, 50, 500] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        let _ = mfq::onnx::from_bytes(&bytes, None, "rand");
    }
}

#[test]
fn unsupported_op_and_attribute_reported_before_running() {
    let m = mfq::onnx::from_bytes(
        &B::new(13)
            .input("x", &[1])
            .node("Frobnicate", &["x"], &["y"])
            .output("y", &[1])
            .bytes(),
        None,
        "f",
    )
    .expect("import");
    let e = Interpreter::new(&m).expect_err("must fail").to_string();
    assert!(e.contains("Frobnicate") && e.contains("opset 13"), "{e}");
    let mut p = B::new(13)
        .input("x", &[1])
        .node("Relu", &["x"], &["y"])
        .output("y", &[1])
        .proto();
    let mut a = onnx_protobuf::AttributeProto::new();
    a.name = "mystery".into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::INT.into();
    a.i = 3;
    p.graph.as_mut().expect("g").node[0].attribute.push(a);
    let m = mfq::onnx::from_bytes(&p.write_to_bytes().expect("e"), None, "a").expect("import");
    let e = Interpreter::new(&m).expect_err("must fail").to_string();
    assert!(e.contains("mystery") && e.contains("Relu_0"), "{e}");
}

#[test]
fn wrong_input_shape_or_dtype_is_an_error() {
    let m = mfq::onnx::from_bytes(&small().bytes(), None, "s").expect("import");
    let i = Interpreter::new(&m).expect("interp");
    let e = i
        .run(&[("x".into(), Tensor::f32(&[2, 4], vec![0.0; 8]).expect("t"))])
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("'x'") && e.contains("shape"), "{e}");
    let e = i
        .run(&[("x".into(), Tensor::vec_i64(vec![1, 2, 3]))])
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("dtype"), "{e}");
    assert!(i
        .run(&[])
        .expect_err("must fail")
        .to_string()
        .contains("missing input 'x'"));
}

#[test]
fn shape_arithmetic_folds_to_static_graph() {
    // y = Reshape(x, Concat(Gather(Shape(x), 0), [-1])) — dynamic until the batch is fixed.
    let b = B::new(13)
        .input("x", &[-1, 2, 3])
        .init_i64("idx0", &[0])
        .init_i64("minus1", &[-1])
        .node("Shape", &["x"], &["s"])
        .node("Gather", &["s", "idx0"], &["n"])
        .node("Concat", &["n", "minus1"], &["shape"])
        .node("Reshape", &["x", "shape"], &["y"])
        .output("y", &[-1, 6]);
    let mut p = b.proto();
    let mut ax = onnx_protobuf::AttributeProto::new();
    ax.name = "axis".into();
    ax.type_ = onnx_protobuf::attribute_proto::AttributeType::INT.into();
    ax.i = 0;
    p.graph.as_mut().expect("g").node[2].attribute.push(ax);
    let mut m = mfq::onnx::from_bytes(&p.write_to_bytes().expect("e"), None, "d").expect("import");
    assert_eq!(m.graph.node_count(), 4);
    let folded = fold::make_static(&mut m, 4).expect("static");
    assert_eq!(folded, 3);
    assert_eq!(m.graph.node_count(), 1);
    let y = m.graph.outputs[0];
    assert_eq!(
        m.graph.value(y).shape,
        Some(vec![Dim::Known(4), Dim::Known(6)])
    );
    let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let out = Interpreter::new(&m)
        .expect("interp")
        .run(&[("x".into(), Tensor::f32(&[4, 2, 3], data).expect("x"))])
        .expect("run");
    assert_eq!(out[0].1.shape(), &[4, 6]);
}

struct Counter {
    seen: std::collections::BTreeMap<String, (usize, f32)>,
}

impl mfq::interp::Observer for Counter {
    fn observe(&mut self, _v: mfq::ir::ValueId, name: &str, t: &Tensor) {
        let max = t
            .to_f32()
            .map(|a| a.iter().fold(f32::MIN, |m, v| m.max(*v)))
            .unwrap_or(0.0);
        let e = self.seen.entry(name.to_string()).or_insert((0, f32::MIN));
        e.0 += 1;
        e.1 = e.1.max(max);
    }
}

#[test]
fn observers_see_every_tensor_of_every_chunk() {
    let m = mfq::onnx::from_bytes(&small().bytes(), None, "s").expect("import");
    let i = Interpreter::new(&m).expect("interp");
    let mut c = Counter {
        seen: Default::default(),
    };
    let out = i.run_batched_observed(&x(5), Some(2), &mut c).expect("run");
    // Three chunks (2 + 2 + 1) of x, h and y; the observer's state is all that grows.
    for k in ["x", "h", "y"] {
        assert_eq!(c.seen[k].0, 3, "{k}");
    }
    let ymax = out[0]
        .1
        .to_f32()
        .expect("y")
        .iter()
        .fold(f32::MIN, |m, v| m.max(*v));
    assert_eq!(c.seen["y"].1, ymax);
}

#[test]
fn batched_runs_are_deterministic_across_thread_counts() {
    let m = mfq::onnx::from_bytes(&small().bytes(), None, "s").expect("import");
    let i = Interpreter::new(&m).expect("interp");
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| i.run_batched(&x(9), None).expect("run"))
    };
    let a = run(1);
    assert_eq!(a, run(2));
    assert_eq!(a, run(4));
    assert_eq!(a, i.run(&x(9)).expect("whole batch"));
}
