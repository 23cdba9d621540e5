//! The demo's models: decision trees (linfa-trees) trained at start on the
//! iris data set that linfa-datasets ships, so the model servers really
//! predict and a worse model is really less accurate. No file or download.
//!
//! The samples are split once, deterministically: every third one is held
//! out as the labelled traffic the load generator sends (iris is ordered by
//! class, so each class keeps its share on both sides).

use anyhow::{Context, Result};
use linfa::{Dataset, prelude::Predict, traits::Fit};
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use ndarray::{Array1, Array2, Axis};

/// The iris classes, by label.
pub const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];
/// Features per sample (sepal length, sepal width, petal length, petal
/// width, in cm).
pub const FEATURES: usize = 4;

/// One labelled sample of the held-out set.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub features: [f64; FEATURES],
    pub label: usize,
}

/// The training part and the held-out labelled part of iris.
pub struct Data {
    train: Dataset<f64, usize, ndarray::Ix1>,
    pub held_out: Vec<Sample>,
}

impl Data {
    pub fn load() -> Data {
        let iris = linfa_datasets::iris();
        let (records, targets) = (iris.records(), iris.targets());
        let (mut train_idx, mut held_out) = (vec![], vec![]);
        for (i, row) in records.axis_iter(Axis(0)).enumerate() {
            if i % 3 == 0 {
                let mut features = [0.0; FEATURES];
                for (f, v) in features.iter_mut().zip(row.iter()) {
                    *f = *v;
                }
                held_out.push(Sample {
                    features,
                    label: targets[i],
                });
            } else {
                train_idx.push(i);
            }
        }
        let train = Dataset::new(
            records.select(Axis(0), &train_idx),
            targets.select(Axis(0), &train_idx),
        );
        Data { train, held_out }
    }
}

/// A trained classifier.
pub struct Model {
    tree: DecisionTree<f64, usize>,
    /// Share of the held-out samples it labels right.
    pub held_out_accuracy: f64,
}

/// How a model is trained.
#[derive(Clone, Copy, Debug)]
pub enum Recipe {
    /// Gini splits, grown until pure: the stable model.
    Gini,
    /// Entropy splits, grown until pure: a different model of the same
    /// quality (the healthy canary).
    Entropy,
    /// One split only: a model that cannot tell two of the classes apart.
    Stump,
}

impl Model {
    pub fn train(data: &Data, recipe: Recipe) -> Result<Model> {
        let params = match recipe {
            Recipe::Gini => DecisionTree::params().split_quality(SplitQuality::Gini),
            Recipe::Entropy => DecisionTree::params().split_quality(SplitQuality::Entropy),
            Recipe::Stump => DecisionTree::params().max_depth(Some(1)),
        };
        let tree = params
            .fit(&data.train)
            .with_context(|| format!("training the {recipe:?} decision tree"))?;
        let mut model = Model {
            tree,
            held_out_accuracy: 0.0,
        };
        let right = data
            .held_out
            .iter()
            .filter(|s| model.predict(&s.features) == s.label)
            .count();
        model.held_out_accuracy = right as f64 / data.held_out.len() as f64;
        Ok(model)
    }

    /// The class label for one sample.
    pub fn predict(&self, features: &[f64; FEATURES]) -> usize {
        let x = Array2::from_shape_vec((1, FEATURES), features.to_vec())
            .expect("a 1×FEATURES array has FEATURES elements");
        let y: Array1<usize> = self.tree.predict(&x);
        y[0]
    }

    /// The tree as the gRPC model server reads it (`tests/grpc/tree_model.py`):
    /// `{"classes", "features", "root"}`, each split node
    /// `{"feature", "below", "left", "right"}` (a sample goes left when its
    /// feature is below the value, as linfa-trees predicts), each leaf
    /// `{"class"}`. Split values are written exactly (shortest round trip).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "classes": CLASSES,
            "features": FEATURES,
            "root": node_json(self.tree.root_node()),
        })
    }
}

fn node_json(node: &TreeNode<f64, usize>) -> serde_json::Value {
    let children = node.children();
    match (node.prediction(), children[0], children[1]) {
        (None, Some(left), Some(right)) => {
            let (feature, below, _) = node.split();
            serde_json::json!({
                "feature": feature,
                "below": below,
                "left": node_json(left),
                "right": node_json(right),
            })
        }
        (Some(class), ..) => serde_json::json!({ "class": class }),
        // linfa-trees makes a node a leaf when either child is missing.
        (None, ..) => unreachable!("a linfa-trees split node has both children"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_models_differ_in_quality_as_the_demo_says() {
        let data = Data::load();
        assert_eq!(data.held_out.len(), 50);
        let good = Model::train(&data, Recipe::Gini).unwrap();
        let twin = Model::train(&data, Recipe::Entropy).unwrap();
        let stump = Model::train(&data, Recipe::Stump).unwrap();
        assert!(good.held_out_accuracy >= 0.9, "{}", good.held_out_accuracy);
        assert!(twin.held_out_accuracy >= 0.9, "{}", twin.held_out_accuracy);
        assert!(
            stump.held_out_accuracy <= 0.7,
            "{}",
            stump.held_out_accuracy
        );
    }

    /// `tests/grpc/tree_model.py` (what the gRPC model servers run) labels
    /// every iris sample as linfa-trees does, for every recipe.
    #[test]
    fn the_exported_tree_predicts_in_python_as_in_rust() {
        let data = Data::load();
        let iris = linfa_datasets::iris();
        let rows: Vec<Vec<f64>> = iris
            .records()
            .axis_iter(Axis(0))
            .map(|r| r.to_vec())
            .collect();
        let dir = std::env::temp_dir().join(format!("canary-tree-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for recipe in [Recipe::Gini, Recipe::Entropy, Recipe::Stump] {
            let model = Model::train(&data, recipe).unwrap();
            let tree = dir.join(format!("{recipe:?}.json"));
            std::fs::write(&tree, model.to_json().to_string()).unwrap();
            let script = "import json, sys; sys.path.insert(0, sys.argv[1]); import tree_model; \
                m = tree_model.TreeModel(sys.argv[2]); \
                print(json.dumps([m.predict(x) for x in json.load(sys.stdin)]))";
            let mut child = std::process::Command::new(crate::grpc::PYTHON)
                .args(["-c", script])
                .arg(crate::grpc::script_path(""))
                .arg(&tree)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            serde_json::to_writer(child.stdin.take().unwrap(), &rows).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{recipe:?}");
            let python: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
            let rust: Vec<&str> = rows
                .iter()
                .map(|r| CLASSES[model.predict(&[r[0], r[1], r[2], r[3]])])
                .collect();
            assert_eq!(python, rust, "{recipe:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
