namespace Qed.Tests.PowerCut;

/// <summary>Counts of what the checked crash states showed.</summary>
internal sealed class CrashTally
{
    private readonly object _sync = new();

    public int Checked { get; private set; }

    public Dictionary<string, int> ByKind { get; } = new(StringComparer.Ordinal);

    public int NeedCheck { get; private set; }

    public int QemuCorrupt { get; private set; }

    public int Repaired { get; private set; }

    public int UnreadableReadOnly { get; private set; }

    public int PartialTail { get; private set; }

    public int ConfirmedByQemu { get; private set; }

    public void Add(string kind, StateOutcome outcome)
    {
        lock (_sync)
        {
            Checked++;
            ByKind[kind] = ByKind.GetValueOrDefault(kind) + 1;
            NeedCheck += outcome.NeedCheck ? 1 : 0;
            QemuCorrupt += outcome.QemuCorrupt ? 1 : 0;
            Repaired += outcome.Repaired ? 1 : 0;
            UnreadableReadOnly += outcome.UnreadableReadOnly ? 1 : 0;
            PartialTail += outcome.PartialTail ? 1 : 0;
            ConfirmedByQemu += outcome.ConfirmedByQemu ? 1 : 0;
        }
    }

    public void Add(CrashTally other)
    {
        lock (_sync)
        {
            Checked += other.Checked;
            foreach (var (kind, n) in other.ByKind)
            {
                ByKind[kind] = ByKind.GetValueOrDefault(kind) + n;
            }
            NeedCheck += other.NeedCheck;
            QemuCorrupt += other.QemuCorrupt;
            Repaired += other.Repaired;
            UnreadableReadOnly += other.UnreadableReadOnly;
            PartialTail += other.PartialTail;
            ConfirmedByQemu += other.ConfirmedByQemu;
        }
    }

    public override string ToString() =>
        $"{Checked} crash states checked ({string.Join(", ", ByKind.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"{k.Value} {k.Key}"))}); "
        + $"{NeedCheck} with need-check set, {QemuCorrupt} of them corrupt before the repair, {UnreadableReadOnly} with reads a read-only open must refuse, "
        + $"{PartialTail} ending in a partial cluster, {Repaired} changed by the writable open, {ConfirmedByQemu} confirmed by qemu-img convert";
}

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
