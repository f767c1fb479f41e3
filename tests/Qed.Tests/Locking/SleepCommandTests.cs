using System.Diagnostics;
using Qed.Image;
using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary><c>qed io -c 'sleep MS'</c>, the holder of the locking tests, against qemu-io's <c>sleep</c>: the same arguments accepted, the same messages.</summary>
public sealed class SleepCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("sleep 0x10")]
    [InlineData("sleep 010")]
    [InlineData("sleep -0")]
    [InlineData("sleep 5")]
    [InlineData("sleep x")]
    [InlineData("sleep -1")]
    [InlineData("sleep 1.5")]
    [InlineData("sleep 10k")]
    [InlineData("sleep 0x")]
    [InlineData("sleep")]
    [InlineData("sleep 1 2")]
    public void Sleep_parses_as_qemu_io_does(string command)
    {
        QedImage.Create(_dir.File("d.qed"), new QedCreateOptions { Size = 1 << 20 });
        var qemu = Tools.Run("qemu-io", ["-c", command, "-c", "read 0 1", "d.qed"], _dir.Path);
        var ours = QedCli.Run("io", "-c", command, "-c", "read 0 1", _dir.File("d.qed"));
        Assert.Equal(QedCli.NormalizeStatistics(qemu.StdOut), QedCli.NormalizeStatistics(ours.StdOut));
        Assert.Equal(QedCli.Lines(qemu.StdErr), QedCli.Lines(ours.StdErr));
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
    }

    [Fact]
    public void Sleep_waits_with_the_image_open()
    {
        QedImage.Create(_dir.File("d.qed"), new QedCreateOptions { Size = 1 << 20 });
        var clock = Stopwatch.StartNew();
        var result = QedCli.Run("io", "-r", "-c", "sleep 300", _dir.File("d.qed"));
        Assert.Equal(0, result.ExitCode);
        Assert.True(clock.ElapsedMilliseconds >= 300, $"returned after {clock.ElapsedMilliseconds} ms");
    }
}
