//! Experience replay: a ring of transitions, sampled uniformly.

use rand::Rng;

#[derive(Clone, Debug)]
pub(crate) struct Transition {
    pub observation: Vec<f32>,
    pub action: [u32; 3],
    pub reward: f32,
    pub next: Vec<f32>,
}

pub(crate) struct Replay {
    items: Vec<Transition>,
    capacity: usize,
    next: usize,
}

impl Replay {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Vec::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    pub fn push(&mut self, t: Transition) {
        if self.items.len() < self.capacity {
            self.items.push(t);
        } else {
            self.items[self.next] = t;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn sample<'a>(&'a self, rng: &mut impl Rng, n: usize) -> Vec<&'a Transition> {
        (0..n)
            .map(|_| &self.items[rng.random_range(0..self.items.len())])
            .collect()
    }
}
