using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>How an image was last compared with qemu-img check.</summary>
internal enum RelationKind
{
    /// <summary>Both tools checked it and every counter agreed.</summary>
    Compared,
    /// <summary>Neither tool could open it.</summary>
    BothRefused,
    /// <summary>table_size 1: we open it, QEMU refuses every such image (QED-FORMAT.md §2.3).</summary>
    QemuRefusesTableSizeOne,
    /// <summary>image_size above QEMU's wrapped maximum: we open it, QEMU refuses (§2.2).</summary>
    QemuRefusesWrappedMaximum,
    /// <summary>image_size between our cap and QEMU's maximum (2^63): QEMU opens it, we refuse (§2.2's recommendation).</summary>
    WeRefuseAboveOurCap,
    /// <summary>The backing chain names one file twice: we refuse; qemu-img is not asked (a read-only check of such a chain may never return).</summary>
    ChainRepeatsAFile,
}

/// <summary>
/// The exact relation between <c>qed check -f qed --output=json</c> (after <c>-r all</c>, or without repair) and
/// <c>qemu-img check -f qed [-r all] --output=json</c> run next on the same file.
/// </summary>
/// <remarks>
/// Both checkers follow QED-FORMAT.md §8: the same walk, the same order, the same offset rules. So when both open the
/// image:
/// <list type="bullet">
/// <item>total, allocated and fragmented clusters, corruptions, check errors and the exit status are equal;</item>
/// <item>after our repair, qemu-img's own repair (<c>-r all</c>) fixes nothing: no invalid entry is left behind, and the
/// corruptions that remain are exactly those we report as unfixable (clusters referenced twice);</item>
/// <item>leaks are equal. QEMU's check counts one spurious leak every <c>cs − 1</c> clusters (§8.4), so the
/// files compared here must have fewer than <c>cs − 1</c> clusters, where QEMU's index arithmetic is exact; the fuzz
/// corpus is far below that (at most a few MiB with 4 KiB clusters, 16 MiB being the limit), and a larger file fails the
/// relation instead of loosening it.</item>
/// </list>
/// Where only one of them opens the image, the difference must be one documented in QED-FORMAT.md, recognised by the
/// header field of some QED image in the chain that causes it and by the error text: table_size 1 (§2.3, QEMU cannot
/// open any such image) and QEMU's wrapping maximum image size (§2.2, both directions). Anything else is a difference to
/// investigate. A chain that names one file twice is refused by us ("creates an infinite loop") and not given to
/// qemu-img at all: QEMU 7.2 detects loops only in <c>qemu-img info --backing-chain</c>, not when it opens a chain, so
/// (verified) a read-only <c>qemu-img check</c> of a QED image that names itself does not return, with <c>-r</c> it
/// fails on its own image lock, and a chain that comes back to a file as raw (the no-probe bit) is opened and checked
/// (see <see cref="CheckLoop"/>).
/// </remarks>
internal static class QemuCheckRelation
{
    /// <summary>For a chain that names one file twice: we must have refused it (qemu-img is not run on such chains).</summary>
    public static RelationKind CheckLoop(CheckReport ours)
    {
        Require(!ours.HasReport && ours.ExitCode == 1, "qed opened a backing chain that names one file twice");
        return RelationKind.ChainRepeatsAFile;
    }

    /// <summary>Returns how the two reports relate, or throws <see cref="RelationException"/> naming the first broken rule.</summary>
    /// <param name="chain">The image's chain as the second checker saw it (after our repair).</param>
    /// <param name="ours">Our report.</param>
    /// <param name="qemu">qemu-img's report on the same file, run right after ours.</param>
    /// <param name="afterRepair">True when ours is <c>-r all</c> and qemu-img's is <c>-r all</c> too.</param>
    public static RelationKind Check(ChainFacts chain, CheckReport ours, CheckReport qemu, bool afterRepair)
    {
        bool weOpened = ours.HasReport;
        bool qemuOpened = qemu.HasReport;
        string qemuError = qemu.Raw.StdErr;

        if (!weOpened)
        {
            Require(ours.ExitCode == 1, "qed check printed no report but did not exit 1");
            if (!qemuOpened)
            {
                Require(qemu.ExitCode == 1, "qemu-img check printed no report but did not exit 1");
                return RelationKind.BothRefused;
            }
            // Sizes in (long.MaxValue rounded to 512, 2^63]: only reachable with 2 MiB clusters and 8-cluster tables.
            Require(chain.QedHeaders.Any(h => h.HasValidGeometry && h.ImageSize > h.OurMaxImageSize && h.ImageSize <= h.QemuMaxImageSize)
                && ours.Raw.StdErr.Contains("QED image size is invalid", StringComparison.Ordinal),
                "qemu-img checks an image that qed cannot open");
            return RelationKind.WeRefuseAboveOurCap;
        }

        if (!qemuOpened)
        {
            Require(qemu.ExitCode == 1, "qemu-img check printed no report but did not exit 1");
            if (chain.QedHeaders.Any(h => h.TableSize == 1) && qemuError.Contains("QED table offset is invalid", StringComparison.Ordinal))
            {
                return RelationKind.QemuRefusesTableSizeOne;
            }
            Require(chain.QedHeaders.Any(h => h.HasValidGeometry && h.ImageSize > h.QemuMaxImageSize) && qemuError.Contains("QED image size is invalid", StringComparison.Ordinal),
                "qed checks an image that qemu-img cannot open");
            return RelationKind.QemuRefusesWrappedMaximum;
        }

        var header = chain.Top;
        Require(header.FileClusters < header.ClusterSize - 1,
            $"the file has {header.FileClusters} clusters of {header.ClusterSize} bytes: QEMU's leak count is exact only below cs - 1 clusters (QED-FORMAT.md §8.4)");
        Require(ours.CheckErrors == 0 && qemu.CheckErrors == 0, "check errors");
        Require(qemu.Total == ours.Total, "total-clusters differ");
        Require(qemu.Allocated == ours.Allocated, "allocated-clusters differ");
        Require(qemu.Fragmented == ours.Fragmented, "fragmented-clusters differ");
        if (afterRepair)
        {
            Require(qemu.CorruptionsFixed == 0, "qemu-img's repair fixed corruptions that our repair left behind");
            Require(qemu.LeaksFixed == 0, "qemu-img's repair fixed leaks (it never does)");
        }
        else
        {
            Require(ours.CorruptionsFixed == 0 && ours.LeaksFixed == 0, "a check without -r reported fixes");
        }
        Require(qemu.Corruptions == ours.Corruptions, "corruptions differ: what remains is not exactly what we report as unfixable");
        Require(qemu.Leaks == ours.Leaks, "leaks differ");
        Require(qemu.ExitCode == ours.ExitCode, "exit statuses differ");
        return RelationKind.Compared;
    }

    /// <summary>
    /// Our repair fixed exactly what qemu-img counts as fixable, no more and no less: zeroing an invalid entry marks no
    /// cluster, so the clusters referenced twice are the same before and after it, and the leaked clusters we cut off
    /// the end of the file are leaks before it. Hence qemu-img's corruptions on the image as written equal the
    /// corruptions we fixed plus those qemu-img still finds after our repair, and likewise for leaks.
    /// </summary>
    /// <param name="qemuAsWritten">qemu-img check on the image before our repair.</param>
    /// <param name="ours">Our <c>check -r all</c>.</param>
    /// <param name="qemuRepaired">qemu-img check -r all on the image after our repair.</param>
    public static void CheckRepairAccounting(CheckReport qemuAsWritten, CheckReport ours, CheckReport qemuRepaired)
    {
        Require(qemuAsWritten.Corruptions == ours.CorruptionsFixed + qemuRepaired.Corruptions,
            $"qemu-img found {qemuAsWritten.Corruptions} corruptions before our repair, which fixed {ours.CorruptionsFixed} and left {qemuRepaired.Corruptions}");
        Require(qemuAsWritten.Leaks == ours.LeaksFixed + qemuRepaired.Leaks,
            $"qemu-img found {qemuAsWritten.Leaks} leaks before our repair, which fixed {ours.LeaksFixed} and left {qemuRepaired.Leaks}");
    }

    private static void Require(bool condition, string rule)
    {
        if (!condition)
        {
            throw new RelationException(rule);
        }
    }
}

/// <summary>A broken rule of <see cref="QemuCheckRelation"/>.</summary>
internal sealed class RelationException(string message) : Exception(message);
