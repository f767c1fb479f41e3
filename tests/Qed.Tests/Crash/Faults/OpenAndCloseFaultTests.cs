using Qed.Format;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash.Faults;

/// <summary>Faults where no request is waiting: the repair a writable open runs, and the close. Both report them.</summary>
public class OpenAndCloseFaultTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_repair_at_open_that_cannot_write_fails_the_open(bool useAsync)
    {
        // Regression: the check's write error was only counted, so the open succeeded with the bad entry still in place
        // (the first read of that cluster then failed as corrupt) and the caller never heard of the I/O error.
        using var dir = new TempDirectory();
        string path = dir.File("d.qed");
        Img.Create(path, 16 * Img.MiB);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 65536, 0x16, useAsync); // data 0x50000, L2 0x60000
        }
        Tools.PokeU64(path, 0x60008, 0x10000000); // entry 1 far beyond the end of the file
        Tools.Poke(path, HeaderLayout.FeaturesOffset, (byte)QedFeatures.NeedCheck);

        // The repair's first write is the rewritten L2 table.
        var faulty = new FaultyFileAccessor(HandleFileAccessor.Open(path, readOnly: false), FaultKind.FailWrite, 1);
        var error = await Assert.ThrowsAsync<QedException>(() => Img.OpenOver(faulty, useAsync));
        faulty.Dispose();
        Assert.Same(faulty.Injected, error.InnerException);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.True(Img.FileHeader(path).NeedsCheck, "a failed repair cleared the need-check bit");
        Assert.Equal(0x10000000UL, Img.FileU64(path, 0x60008));

        // The next open repairs; nothing was lost.
        await using var reopened = await Img.Open(path, useAsync);
        Assert.Equal(0UL, Img.FileU64(path, 0x60008));
        Img.AllBytes(0x16, await Img.Read(reopened, 0, 65536, useAsync));
        Img.AllBytes(0, await Img.Read(reopened, 65536, 65536, useAsync));
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    [InlineData(false, true)]
    public async Task A_failed_close_is_reported_and_releases_the_file(bool failFlush, bool useAsync)
    {
        var kind = failFlush ? FaultKind.FailFlush : FaultKind.FailWrite;
        using var dir = new TempDirectory();
        string path = dir.File("c.qed");
        Img.Create(path, 16 * Img.MiB);
        // Learn how many writes and flushes come before the close; the close's first flush, or its need-check clear, fails.
        var census = new FaultyFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        await WorkAsync(census, useAsync);
        int at = kind == FaultKind.FailFlush ? census.FlushesIn(SessionPhase.Open) + census.FlushesIn(SessionPhase.Work) + 1 : census.WritesIn(SessionPhase.Open) + census.WritesIn(SessionPhase.Work) + 1;
        Img.Create(path, 16 * Img.MiB);

        var faulty = new FaultyFileAccessor(HandleFileAccessor.Open(path, readOnly: false), kind, at);
        var error = await Assert.ThrowsAnyAsync<IOException>(() => WorkAsync(faulty, useAsync));
        Assert.Equal(SessionPhase.Close, faulty.FiredIn);
        Assert.Same(faulty.Injected, error);
        Assert.True(faulty.IsDisposed, "the failed close did not release the file");
        // Nothing claimed the image consistent: the next open checks it, and the data is there.
        Assert.True(Img.FileHeader(path).NeedsCheck);
        await using var reopened = await Img.Open(path, useAsync);
        Img.AllBytes(0x44, await Img.Read(reopened, 0, 12288, useAsync));
    }

    private static async Task WorkAsync(FaultyFileAccessor file, bool useAsync)
    {
        file.Phase = SessionPhase.Open;
        var image = await Img.OpenOver(file, useAsync);
        file.Phase = SessionPhase.Work;
        await Img.Write(image, 0, 12288, 0x44, useAsync);
        file.Phase = SessionPhase.Close;
        await Img.Close(image, useAsync);
    }
}
