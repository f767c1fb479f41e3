using Qed.Format;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.PowerCut;

/// <summary>
/// A crash can leave the file ending inside a cluster (an extending write that landed in part). The allocation pointer
/// rounds the length down, so the next session allocates that cluster again, over old bytes that are on disk: unlike
/// space past the end, it does not read as zeros until the new data lands.
/// </summary>
public class PartialClusterReuseTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_reused_partial_cluster_holds_its_new_data_before_an_entry_points_at_it(bool useAsync)
    {
        const int Cluster = 65536;
        const long Size = 16 << 20;
        using var dir = new TempDirectory();
        string path = dir.File("tail.qed");
        QedImage.Create(path, new QedCreateOptions { Size = Size, ClusterSize = Cluster, TableSize = 2 });
        using (var image = QedImage.Open(path))
        {
            // Data at 0x30000, its L2 table at 0x40000, file 0x60000.
            image.Write(GuestPattern.Bytes(1, 0, Cluster), 0);
        }
        byte[] input = File.ReadAllBytes(path);
        Assert.Equal(0x60000, input.Length);
        // What a power cut while writing guest cluster 1 may leave: 8 KiB of its data past the end, not its entry, need-check set.
        input = [.. input, .. GuestPattern.Bytes(2, Cluster, 8192)];
        input[HeaderLayout.FeaturesOffset] |= (byte)QedFeatures.NeedCheck;

        // The next session repairs at open (nothing to fix, no whole leaked cluster to reclaim) and writes guest cluster 2.
        var session = await RecordedSession.RunAsync(path, input, new GuestScript(firstId: 3).Write(2 * Cluster, Cluster).Ops, useAsync);
        Assert.Contains(session.Log, op => op.Kind == FileOpKind.Write && op.Offset == 0x60000 && op.Data.Length == Cluster);

        var baseline = GuestBaseline.Zeros.With([(0, GuestPattern.Bytes(1, 0, Cluster))]);
        var model = new GuestModel(Size, Cluster, baseline, session.Ops, [(0, 2L * Cluster)]);
        var generator = new CrashStateGenerator(input, session.Log);
        var recipes = generator.Exhaustive().ToList();
        var tally = CrashStateRunner.CheckAll("partial-cluster", new CrashStateVerifier(dir.Path, generator, model), recipes, dir.Path);

        TestSeed.Report($"PowerCut partial-cluster reuse ({(useAsync ? "async" : "sync")}): {tally}");
        Assert.Equal(recipes.Count, tally.Checked);
        Assert.True(tally.Checked >= 20, $"{tally}"); // every subset of every epoch, at every length it had
    }
}
