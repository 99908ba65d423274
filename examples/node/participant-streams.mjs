// Transcribe every participant of a room from ONE job, without AgentSession: per participant one
// streaming STT stream (LiveKit Inference, deepgram/nova-3), and the job publishes each final itself.
//
// This sidesteps agents-js #1927 (a second AgentSession.start({ room }) in one job throws) and is
// the lightest design: one agent participant, one STT stream per speaker, no session machinery.
// A streaming STT finds each utterance's end itself, so no VAD runs in the job.
//
//   node participant-streams.mjs start      # needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET
//
// Environment: LIVEKIT_INFERENCE_URL (read by inference.STT: unset, LiveKit Cloud's gateway;
// `kit live --agent` sets it to its local stand-in), KIT_AGENT_NAME (the name to register;
// explicit dispatch only).
import {
  AutoSubscribe,
  ServerOptions,
  cli,
  defineAgent,
  inference,
  log,
  shortuuid,
  stt,
} from '@livekit/agents';
import {
  AudioStream,
  ParticipantKind,
  RoomEvent,
  TrackKind,
  TrackSource,
} from '@livekit/rtc-node';
import { fileURLToPath } from 'node:url';

const AGENT_NAME = process.env.KIT_AGENT_NAME || 'participant-streams-transcriber';

export default defineAgent({
  entry: async (ctx) => {
    // As LiveKit's examples write it: no base URL, no key (the JWT is signed with LIVEKIT_API_KEY/SECRET).
    const transcriber = new inference.STT({ model: 'deepgram/nova-3', language: 'en' });

    // Subscribed microphones, including late joiners': each gets its own stream until it ends.
    ctx.room.on(RoomEvent.TrackSubscribed, (track, publication, participant) => {
      if (
        track.kind !== TrackKind.KIND_AUDIO ||
        publication.source !== TrackSource.SOURCE_MICROPHONE ||
        participant.kind === ParticipantKind.AGENT // never transcribe other agents
      ) {
        return;
      }
      transcribe(ctx.room, transcriber, track, participant.identity).catch((error) =>
        log().error({ error, participant: participant.identity }, 'transcription failed'),
      );
    });

    await ctx.connect(undefined, AutoSubscribe.AUDIO_ONLY);
  },
});

async function transcribe(room, transcriber, track, identity) {
  const speech = transcriber.stream();
  const audio = new AudioStream(track, { sampleRate: 16000, numChannels: 1 }); // what the STT is sent
  const pump = (async () => {
    for await (const frame of audio) speech.pushFrame(frame);
    speech.endInput(); // the track ended: flush the last utterance
  })();

  for await (const event of speech) {
    const text = event.alternatives?.[0]?.text;
    if (event.type !== stt.SpeechEventType.FINAL_TRANSCRIPT || !text) continue;
    // LiveKit's transcription format, what AgentSession publishes and what LiveKit clients read:
    // a text stream on lk.transcription, sent on behalf of the speaker, naming their track.
    const writer = await room.localParticipant.streamText({
      topic: 'lk.transcription',
      senderIdentity: identity,
      attributes: {
        'lk.transcription_final': 'true',
        'lk.transcribed_track_id': track.sid,
        'lk.segment_id': shortuuid('SG_'),
      },
    });
    await writer.write(text);
    await writer.close();
  }
  await pump;
}

cli.runApp(
  new ServerOptions({
    agent: fileURLToPath(import.meta.url),
    agentName: AGENT_NAME, // a name means explicit dispatch: the worker joins only rooms it is sent to
    host: '127.0.0.1', // the worker's health-check server (default: every interface, port 8081)
    initializeProcessTimeout: 60 * 1000, // a job process starts slowly on a busy machine: more than the default 10 s
  }),
);
