"""The kernel lab: real kernels of every era (distribution images and builds from source),
booted under qemu, each replaying scenarios with the host runner inside the guest."""
