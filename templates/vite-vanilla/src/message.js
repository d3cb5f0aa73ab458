export const message = 'Edit src/message.js and watch this line change.';
