using BenchmarkDotNet.Running;

// Micro-benchmarks of the engine's hot paths; never run by CI.
// Run: dotnet run -c Release --project bench/Qed.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Qed.Benchmarks.CacheBenchmarks).Assembly).Run(args);
