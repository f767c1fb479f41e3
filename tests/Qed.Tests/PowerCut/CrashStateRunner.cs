namespace Qed.Tests.PowerCut;

/// <summary>Checks crash states on a few workers (each state runs qemu-img, so two workers keep two cores busy).</summary>
internal static class CrashStateRunner
{
    /// <summary>One state in this many is also read back by qemu-img convert.</summary>
    public const int ConfirmEvery = 8;

    /// <summary>Checks every recipe; fails the test with the first broken rule (lowest index), naming the state and keeping its file for a post-mortem.</summary>
    public static CrashTally CheckAll(string label, CrashStateVerifier verifier, IReadOnlyList<CrashRecipe> recipes, string dir)
    {
        var tally = new CrashTally();
        int workers = Math.Clamp(Environment.ProcessorCount, 1, 4);
        var failures = new System.Collections.Concurrent.ConcurrentBag<(int Index, string Message)>();
        var threads = Enumerable.Range(0, workers).Select(worker => new Thread(() =>
        {
            string fileName = $"{label}-state-{worker}.qed";
            for (int i = worker; i < recipes.Count; i += workers)
            {
                try
                {
                    tally.Add(recipes[i].Kind, verifier.Verify(recipes[i], fileName, confirmWithQemu: i % ConfirmEvery == 0));
                }
                catch (Exception e)
                {
                    string kept = Path.Combine(Path.GetTempPath(), $"qed-powercut-{label}-{i}.qed");
                    File.Copy(Path.Combine(dir, fileName), kept, overwrite: true);
                    string what = e is CrashStateException ? e.Message : e.ToString();
                    failures.Add((i, $"{label}: crash state {i} of {recipes.Count} ({recipes[i]}) kept as {kept}: {what}"));
                    return;
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (!failures.IsEmpty)
        {
            Assert.Fail(string.Join("\n", failures.OrderBy(f => f.Index).Take(3).Select(f => f.Message)));
        }
        return tally;
    }
}
