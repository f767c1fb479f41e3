using Qed.Backing;
using Qed.Check;
using Qed.Format;
using Qed.Image;
using Qed.IO;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Builds the sessions that continue after a crash: a writable open whose need-check repair runs before new requests, and
/// <c>qed check -r all</c> (open without the automatic repair, repair, check again, close). Their inputs are crash states of
/// single-session workloads, chosen to differ in what the repair has to do.
/// </summary>
internal static class ContinuedSessions
{
    /// <summary>Writable opens of need-check crash states of <paramref name="source"/>, each followed by new requests.</summary>
    public static async Task<IReadOnlyList<ContinuedRun>> RepairAtOpenAsync(Func<Task<WorkloadRun>> startSource, Random random, int inputs)
    {
        // Some first sessions leave no crash state with the input that tests the most (see ChooseInputs); another run of
        // the workload, drawn from the same seeded random, does. Without one after a few runs the caller's assertion fails.
        WorkloadRun source = await startSource();
        var chosen = ChooseInputs(source, random, inputs, f => f.NeedCheck);
        for (int attempt = 1; attempt < MaxSourceRuns && !chosen.Any(c => IsMostTesting(c.Features)); attempt++)
        {
            source = await startSource();
            chosen = ChooseInputs(source, random, inputs, f => f.NeedCheck);
        }
        var runs = new List<ContinuedRun>();
        for (int k = 0; k < chosen.Count; k++)
        {
            var (input, features) = chosen[k];
            var spec = source.Spec;
            IReadOnlyList<GuestOp> Script(QedImage repaired)
            {
                // The first request allocates into a table the input has, so it takes the cluster at the input's end.
                long first = FirstUnallocatedBesideData(repaired);
                var script = new GuestScript(firstId: 1000 + 100 * k).Write(first, 512 * random.Next(1, 9));
                return [.. script.Ops, .. GuestScript.Draw(random, 6, spec.Size, r => r.NextInt64(spec.Size - 12 * 1024), r => 512 * r.Next(1, 25), zeroes: 0.1, flushes: 0.2, firstId: 1001 + 100 * k)];
            }
            runs.Add(await ContinueAsync(source, $"repair-at-open-{k}", input, features, Script, useAsync: k % 2 == 1, new QedOpenOptions(), maintenance: null));
        }
        return runs;
    }

    /// <summary><c>check -r all</c> sessions on crash states that need a repair: need-check states of <paramref name="dirtySource"/> and leaking states of <paramref name="leakySource"/>.</summary>
    public static async Task<IReadOnlyList<ContinuedRun>> CheckRepairAsync(WorkloadRun dirtySource, WorkloadRun leakySource, Random random, int inputsEach)
    {
        var runs = new List<ContinuedRun>();
        foreach (var (source, wanted) in new[] { (dirtySource, (Func<InputFeatures, bool>)(f => f.NeedCheck && f.Corrupt)), (leakySource, f => f.Reclaimable > 0) })
        {
            var chosen = ChooseInputs(source, random, inputsEach, wanted);
            for (int k = 0; k < chosen.Count; k++)
            {
                var (input, features) = chosen[k];
                runs.Add(await ContinueAsync(source, $"check-repair-{source.Spec.Name}-{k}", input, features, _ => [], useAsync: k % 2 == 0,
                    new QedOpenOptions { SkipCheckOnOpen = true }, RepairAsQedCheckDoes));
            }
        }
        return runs;
    }

    /// <summary>What <c>qed check -r all</c> does between open and close: repair, and check again when anything was fixed.</summary>
    private static async Task RepairAsQedCheckDoes(QedImage image)
    {
        var repaired = await image.CheckAsync(RepairMode.All);
        if (repaired.CorruptionsFixed != 0 || repaired.LeaksFixed != 0)
        {
            await image.CheckAsync(RepairMode.None);
        }
    }

    /// <summary>The first unallocated cluster after the first data cluster, in the same L2 table (4 KiB clusters, 4 MiB per table).</summary>
    private static long FirstUnallocatedBesideData(QedImage image)
    {
        long cluster = image.Geometry.ClusterSize;
        for (long offset = 0; offset < image.Size; offset += cluster)
        {
            if (image.GetStatus(offset, cluster).State != BlockState.Data)
            {
                continue;
            }
            for (long next = offset + cluster; next < image.Size && next / image.Geometry.L2Span == offset / image.Geometry.L2Span; next += cluster)
            {
                if (image.GetStatus(next, cluster).State == BlockState.Unallocated)
                {
                    return next;
                }
            }
        }
        return 0;
    }

    private static async Task<ContinuedRun> ContinueAsync(WorkloadRun source, string label, byte[] input, InputFeatures features, Func<QedImage, IReadOnlyList<GuestOp>> script, bool useAsync, QedOpenOptions options, Func<QedImage, Task>? maintenance)
    {
        string path = Path.Combine(source.Dir, label + ".qed");
        // The input is durable: what its repaired open reads is the baseline every crash of the new session must keep.
        var overlay = new List<(long Offset, byte[] Bytes)>();
        IReadOnlyList<GuestOp> ops;
        using (var repaired = Open(new MemoryFileAccessor(path, input.ToArray()), new QedOpenOptions()))
        {
            foreach (var (start, end) in source.Model.Regions)
            {
                byte[] bytes = new byte[end - start];
                repaired.Read(bytes, start);
                overlay.Add((start, bytes));
            }
            ops = script(repaired);
        }
        var session = await RecordedSession.RunAsync(path, input, ops, useAsync, options, maintenance);
        var spec = source.Spec;
        return new ContinuedRun
        {
            Label = label,
            Input = features,
            Session = session,
            Model = new GuestModel(spec.Size, spec.ClusterSize, source.Model.Baseline.With(overlay), session.Ops, source.Model.Regions),
            Generator = new CrashStateGenerator(input, session.Log),
        };
    }

    /// <summary>Up to <paramref name="count"/> crash states of <paramref name="source"/> that pass <paramref name="wanted"/>: one for each different set of features first, then the next ones found.</summary>
    private static List<(byte[] Input, InputFeatures Features)> ChooseInputs(WorkloadRun source, Random random, int count, Func<InputFeatures, bool> wanted)
    {
        var found = new List<(byte[] Input, InputFeatures Features)>();
        foreach (var recipe in source.Generator.DistinctStates(random, 200))
        {
            byte[] state = source.Generator.Materialize(recipe).ToArray();
            var features = Describe(state, source);
            if (wanted(features))
            {
                found.Add((state, features));
            }
        }
        // First the input that tests the most: a partial last cluster with data that the repair keeps (no whole leaked
        // cluster to reclaim after it) in an image with tables the next allocation can go into.
        found = [.. found.OrderByDescending(f => IsMostTesting(f.Features))];
        var chosen = found.DistinctBy(f => (f.Features.Corrupt, f.Features.PartialTail, f.Features.Leaks > 0)).Take(count).ToList();
        chosen.AddRange(found.Except(chosen).Take(count - chosen.Count));
        return chosen;
    }

    /// <summary>Runs of the first session <see cref="RepairAtOpenAsync"/> tries for an input that <see cref="IsMostTesting"/>.</summary>
    private const int MaxSourceRuns = 8;

    /// <summary>A partial last cluster with data that the repair keeps (no whole leaked cluster to reclaim after it), in an image with tables the next allocation can go into.</summary>
    public static bool IsMostTesting(InputFeatures features) =>
        features.PartialTail && features.Reclaimable == 0 && features.Allocated > 0;

    private static InputFeatures Describe(byte[] state, WorkloadRun source)
    {
        using var image = Open(new MemoryFileAccessor(Path.Combine(source.Dir, "input.qed"), state, readOnly: true), new QedOpenOptions { ReadOnly = true });
        var check = image.Check();
        // A partial last cluster matters when it holds something: the next allocation reuses it.
        int tail = state.Length % source.Spec.ClusterSize;
        bool partialTail = tail != 0 && state.AsSpan(state.Length - tail).ContainsAnyExcept((byte)0);
        long reclaimable;
        using (var copy = Open(new MemoryFileAccessor(Path.Combine(source.Dir, "input.qed"), state.ToArray()), new QedOpenOptions { SkipCheckOnOpen = true }))
        {
            reclaimable = copy.Check(RepairMode.All).LeaksFixed;
        }
        return new InputFeatures(QedHeader.Parse(state).NeedsCheck, check.Corruptions > 0, partialTail, check.Leaks, reclaimable, check.AllocatedClusters);
    }

    private static QedImage Open(FileAccessor file, QedOpenOptions options) =>
        QedImage.OpenCoreAsync(file, options, BackingChain.Start(file.Path), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
}
