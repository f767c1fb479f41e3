using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>The relation the CLI fuzz holds our check against qemu-img's by is exact: it accepts agreement and the documented differences, and nothing else.</summary>
public class QemuCheckRelationTests
{
    private static readonly HeaderFacts s_small = new(true, 4096, 2, 1, 16 << 20, 12 * 4096);

    private static ChainFacts Chain(params HeaderFacts[] headers) =>
        new(headers.Select((h, i) => new ChainLayer($"layer{i}", h, IsQed: true)).ToList(), RepeatsAFile: false);

    private static CheckReport Report(int exit, long corruptions = 0, long leaks = 0, long corruptionsFixed = 0, long leaksFixed = 0, long allocated = 3) =>
        new(exit, true, 4096, allocated, 1, corruptions, corruptionsFixed, leaks, leaksFixed, 0, new ToolResult(exit, "{}", ""));

    private static CheckReport Refused(string error) => new(1, false, 0, 0, 0, 0, 0, 0, 0, 0, new ToolResult(1, "", error));

    [Fact]
    public void Equal_counters_are_compared()
    {
        Assert.Equal(RelationKind.Compared, QemuCheckRelation.Check(Chain(s_small), Report(2, corruptions: 1, corruptionsFixed: 2), Report(2, corruptions: 1), afterRepair: true));
        Assert.Equal(RelationKind.Compared, QemuCheckRelation.Check(Chain(s_small), Report(3, leaks: 2), Report(3, leaks: 2), afterRepair: false));
    }

    [Fact]
    public void Any_difference_in_a_counter_breaks_it()
    {
        Assert.Throws<RelationException>(() => QemuCheckRelation.Check(Chain(s_small), Report(0), Report(3, leaks: 1), afterRepair: true));
        Assert.Throws<RelationException>(() => QemuCheckRelation.Check(Chain(s_small), Report(2, corruptions: 1), Report(2, corruptions: 2), afterRepair: false));
        Assert.Throws<RelationException>(() => QemuCheckRelation.Check(Chain(s_small), Report(0, allocated: 2), Report(0, allocated: 3), afterRepair: false));
        // qemu-img's repair finding something to fix after ours means ours missed it.
        Assert.Throws<RelationException>(() => QemuCheckRelation.Check(Chain(s_small), Report(0), Report(0, corruptionsFixed: 1), afterRepair: true));
    }

    [Fact]
    public void Leaks_are_compared_only_where_qemu_counts_them_exactly()
    {
        // 4096 clusters of 4 KiB: QEMU's faulty index arithmetic has already skipped one bitmap index (§8.4).
        var large = s_small with { FileLength = 4095L * 4096 };
        Assert.Throws<RelationException>(() => QemuCheckRelation.Check(Chain(large), Report(0), Report(0), afterRepair: false));
    }

    [Fact]
    public void One_side_refusing_is_accepted_only_for_the_documented_reasons()
    {
        var tableSizeOne = s_small with { TableSize = 1 };
        Assert.Equal(RelationKind.QemuRefusesTableSizeOne,
            QemuCheckRelation.Check(Chain(s_small, tableSizeOne), Report(0), Refused("qemu-img: Could not open 'f': Could not open backing file: QED table offset is invalid"), afterRepair: false));
        Assert.Throws<RelationException>(() =>
            QemuCheckRelation.Check(Chain(tableSizeOne), Report(0), Refused("qemu-img: Could not open 'f': Image not in QED format"), afterRepair: false));
        Assert.Throws<RelationException>(() =>
            QemuCheckRelation.Check(Chain(s_small), Report(0), Refused("qemu-img: Could not open 'f': QED table offset is invalid"), afterRepair: false));

        // 4 MiB clusters and 4-cluster tables: QEMU's maximum wraps to 0, so any non-zero size is refused (§2.2).
        var wrapped = s_small with { ClusterSize = 4 << 20, TableSize = 4, ImageSize = 1 << 20 };
        Assert.Equal(0UL, wrapped.QemuMaxImageSize);
        Assert.Equal(RelationKind.QemuRefusesWrappedMaximum,
            QemuCheckRelation.Check(Chain(wrapped), Report(0), Refused("qemu-img: Could not open 'f': QED image size is invalid"), afterRepair: false));

        // 2 MiB clusters and 8-cluster tables: QEMU allows 2^63 bytes, we stop at long.MaxValue rounded down to 512.
        var atTwoToThe63 = s_small with { ClusterSize = 2 << 20, TableSize = 8, ImageSize = 1UL << 63 };
        Assert.Equal(1UL << 63, atTwoToThe63.QemuMaxImageSize);
        Assert.Equal(RelationKind.WeRefuseAboveOurCap,
            QemuCheckRelation.Check(Chain(atTwoToThe63), Refused("qed: Could not open 'f': QED image size is invalid (image_size 9223372036854775808 at offset 48)"), Report(0), afterRepair: false));
        Assert.Throws<RelationException>(() =>
            QemuCheckRelation.Check(Chain(s_small), Refused("qed: Could not open 'f': something else"), Report(0), afterRepair: false));
        Assert.Equal(RelationKind.BothRefused, QemuCheckRelation.Check(Chain(s_small), Refused("qed: x"), Refused("qemu-img: y"), afterRepair: true));
    }

    [Fact]
    public void A_repair_accounts_exactly_for_what_qemu_found_before_it()
    {
        QemuCheckRelation.CheckRepairAccounting(Report(2, corruptions: 3, leaks: 4), Report(2, corruptions: 1, corruptionsFixed: 2, leaksFixed: 1), Report(2, corruptions: 1, leaks: 3));
        // Fixing one entry too many (an entry qemu-img thinks valid) or one too few breaks it.
        Assert.Throws<RelationException>(() => QemuCheckRelation.CheckRepairAccounting(Report(2, corruptions: 1), Report(0, corruptionsFixed: 2), Report(0)));
        Assert.Throws<RelationException>(() => QemuCheckRelation.CheckRepairAccounting(Report(3, leaks: 1), Report(0), Report(0)));
    }

    [Fact]
    public void A_chain_that_names_a_file_twice_must_be_refused()
    {
        Assert.Equal(RelationKind.ChainRepeatsAFile, QemuCheckRelation.CheckLoop(Refused("qed: Could not open 'f': Backing file 'f' creates an infinite loop.")));
        Assert.Throws<RelationException>(() => QemuCheckRelation.CheckLoop(Report(0)));
    }
}
