/** JMH benchmarks of the hot paths; run with {@code java -jar bench/target/benchmarks.jar}. */
package dev.shear.bench;
